package roles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStudentFolder: a SID that is a safe name is its own folder; any other
// becomes its safe form and a hash of the SID, never a path, and two SIDs
// that share a safe form get two folders.
func TestStudentFolder(t *testing.T) {
	for _, tc := range []struct{ sid, want string }{
		{"1155000001", "1155000001"},
		{"s-1", "s-1"},
		{"../etc", "_._etc-"},
		{"a/b", "a_b-"},
		{"a b", "a_b-"},
		{".hidden", "_hidden-"},
		{"manifest.csv", "manifest.csv-"},
	} {
		got := StudentFolder(tc.sid)
		if got != tc.want && !(strings.HasSuffix(tc.want, "-") && strings.HasPrefix(got, tc.want) && len(got) == len(tc.want)+8) {
			t.Errorf("StudentFolder(%q) = %q, want %q", tc.sid, got, tc.want)
		}
		if strings.ContainsAny(got, "/\\") || got == ".." || got == "." || filepath.Base(got) != got {
			t.Errorf("StudentFolder(%q) = %q is a path", tc.sid, got)
		}
	}
	if StudentFolder("a b") == StudentFolder("a/b") {
		t.Error("two SIDs of one safe form share a folder")
	}
}

// TestExportRefusesANonEmptyDirectory: an export never writes over another.
func TestExportRefusesANonEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := emptyOrAbsent(dir); err != nil {
		t.Errorf("an empty directory: %v", err)
	}
	if err := emptyOrAbsent(filepath.Join(dir, "new")); err != nil {
		t.Errorf("a new directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := courseConfig(t, "")
	_, err := Export(t.Context(), cfg, ExportOptions{Assignment: "lab", Out: dir}, os.Stdout)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("export into a non-empty directory: %v", err)
	}
	if err := emptyOrAbsent(filepath.Join(dir, "x")); err == nil {
		t.Error("a file as --out was accepted")
	}
}
