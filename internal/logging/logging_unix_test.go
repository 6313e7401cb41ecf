//go:build unix

package logging

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap/zapcore"
)

// TestOpenFile checks the mode of a daemon's log file: created 0600 whatever
// the umask, an existing 0644 one narrowed, and appended to, not truncated.
func TestOpenFile(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	for _, tt := range []struct {
		name     string
		existing []byte
		mode     os.FileMode
	}{
		{"new", nil, 0},
		{"an older log, 0644", []byte("an older line\n"), 0o644},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".log")
			if tt.existing != nil {
				if err := os.WriteFile(path, tt.existing, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			f, err := OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			log, err := New("info", "json", zapcore.AddSync(f))
			if err != nil {
				t.Fatal(err)
			}
			Step(log, 0, "root of trust ready")
			f.Close()
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := info.Mode().Perm(); perm != FileMode {
				t.Errorf("mode %04o, want %04o", perm, FileMode)
			}
			got, _ := os.ReadFile(path)
			if !bytes.HasPrefix(got, tt.existing) || !bytes.Contains(got, []byte("STEP 0: root of trust ready")) {
				t.Errorf("the file holds %q: want the older lines, then the new one", got)
			}
		})
	}
}
