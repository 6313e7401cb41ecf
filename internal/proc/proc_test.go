package proc

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/config"
)

func TestConfigParses(t *testing.T) {
	text := Config("debug", map[string]string{"board": "allow_rc4 = true", "student": `timeout = "5s"`})
	cfg, err := config.Parse([]byte(text), "test.toml")
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if cfg.CA.Listen != "127.0.0.1:0" || cfg.Board.Listen != "127.0.0.1:0" || !cfg.Board.AllowRC4 || cfg.Log.Level != "debug" {
		t.Fatalf("unexpected config %+v from\n%s", cfg, text)
	}
}

// sh runs a shell script as the process under test.
func sh(script string) *exec.Cmd { return exec.Command("sh", "-c", script) }

func TestStart(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		wantAddr string
		wantErr  string
	}{
		{
			name:     "listens",
			script:   `echo 'not json' >&2; echo '{"msg":"CA listening","addr":"127.0.0.1:4242"}' >&2; exec sleep 30`,
			wantAddr: "127.0.0.1:4242",
		},
		{
			name:    "exits first",
			script:  `echo '{"msg":"STEP 0: no root"}' >&2; exit 3`,
			wantErr: "exited before listening (exit status 3)",
		},
		{
			name:    "listening without an address",
			script:  `echo '{"msg":"board listening"}' >&2; exit 0`,
			wantErr: "exited before listening",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start("daemon", sh(tt.script))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Addr != tt.wantAddr {
				t.Errorf("Addr = %q, want %q", p.Addr, tt.wantAddr)
			}
			if code, clean := p.Stop(5 * time.Second); !clean || code != -1 {
				// sleep dies of the SIGTERM: no exit code, but a clean stop
				t.Errorf("Stop = %d, %v; want -1 (signalled), true", code, clean)
			}
		})
	}
}

func TestLogIsReadToTheEnd(t *testing.T) {
	p, err := Launch("worker", sh(`for i in 1 2 3 4 5; do echo "{\"msg\":\"line $i\"}" >&2; done; echo 'plain' >&2`))
	if err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	if n := p.Logged("line "); n != 5 {
		t.Errorf("Logged = %d records, want 5", n)
	}
	if !strings.HasSuffix(p.Log(), "plain\n") {
		t.Errorf("Log does not end with the last line:\n%s", p.Log())
	}
	if r := p.WaitFor(context.Background(), 2, time.Second, func(r Record) bool { return r.Msg() == "line 4" }); r == nil {
		t.Error("WaitFor did not find a record after the mark")
	}
}

func TestKeepLines(t *testing.T) {
	p, err := LaunchWith("chatty", sh(`i=0; while [ $i -lt 200 ]; do echo "{\"msg\":\"n\"}" >&2; i=$((i+1)); done`), Options{KeepLines: 10})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	if p.ExitCode() != 0 {
		t.Fatalf("exit %d: the process must not block on its log", p.ExitCode())
	}
	if n := p.Mark(); n != 10 {
		t.Errorf("kept %d records, want 10", n)
	}
}
