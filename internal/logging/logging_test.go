package logging

import (
	"bytes"
	"encoding/json"
	"strings"
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
