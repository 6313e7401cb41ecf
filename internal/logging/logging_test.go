package logging

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap/zapcore"
)

func TestStepFormats(t *testing.T) {
	tests := []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"console", func(t *testing.T, out string) {
			for _, want := range []string{"INFO", "STEP 3: verify certificate", `"sid": "1155000001"`} {
				if !strings.Contains(out, want) {
					t.Errorf("console output %q lacks %q", out, want)
				}
			}
		}},
		{"json", func(t *testing.T, out string) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(out), &rec); err != nil {
				t.Fatalf("json output %q: %v", out, err)
			}
			if got, want := rec["msg"], "STEP 3: verify certificate"; got != want {
				t.Errorf("msg: got %v want %v", got, want)
			}
			if got, want := rec["sid"], "1155000001"; got != want {
				t.Errorf("sid: got %v want %v", got, want)
			}
			if got, want := rec["step"], float64(3); got != want {
				t.Errorf("step: got %v want %v", got, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New("info", tt.format, zapcore.AddSync(&buf))
			if err != nil {
				t.Fatal(err)
			}
			Step(log, 3, "verify certificate", SID("1155000001"))
			tt.check(t, buf.String())
		})
	}
}

func TestLevelFilters(t *testing.T) {
	var buf bytes.Buffer
	log, err := New("warn", "console", zapcore.AddSync(&buf))
	if err != nil {
		t.Fatal(err)
	}
	Step(log, 1, "hidden")
	log.Info("hidden too")
	log.Warn("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
		t.Errorf("level warn: got %q", out)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct{ level, format, want string }{
		{"loud", "console", `level "loud"`},
		{"info", "xml", `format "xml"`},
	}
	for _, tt := range tests {
		_, err := New(tt.level, tt.format, zapcore.AddSync(&bytes.Buffer{}))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q, %q): got %v want error containing %q", tt.level, tt.format, err, tt.want)
		}
	}
}

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
