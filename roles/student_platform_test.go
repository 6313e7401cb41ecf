package roles

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestUsableSIDs checks which SIDs may name a directory on the student's
// machine: the pattern everywhere, and on Windows no device name.
func TestUsableSIDs(t *testing.T) {
	windows := runtime.GOOS == "windows"
	tests := []struct {
		sid  string
		want string // "" for usable
	}{
		{"1155000001", ""},
		{"alice_2", ""},
		{"../x", "is not a usable student ID"},
		{"-x", "is not a usable student ID"},
		{"CON", map[bool]string{true: "names a device"}[windows]},
		{"nul", map[bool]string{true: "names a device"}[windows]},
		{"COM1", map[bool]string{true: "names a device"}[windows]},
	}
	for _, tt := range tests {
		err := usableSIDs([]string{tt.sid})
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: got %v, want it usable", tt.sid, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: got %v, want an error containing %q", tt.sid, err, tt.want)
		}
	}
}

// TestIsTerminal checks that the progress bar is drawn only on a terminal:
// not into a file, a pipe, or the null device (a character device too).
func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for name, file := range map[string]*os.File{"a file": f, "a pipe": w, os.DevNull: null} {
		if isTerminal(file) {
			t.Errorf("%s: isTerminal says yes", name)
		}
	}
}
