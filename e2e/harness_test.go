// Package e2e runs pkiboard as real processes on 127.0.0.1 and checks what
// users and operators see: the CA, the board and the student as separate
// executables, their exit codes, their files, and interop with openssl.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/proc"
)

// bin is the pkiboard executable built once for the whole package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pkb-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "pkiboard")
	// The daemons are built with the race detector, unless
	// PKIBOARD_E2E_RACE=0 asks for the binary users run (for figures).
	flags := []string{"build", "-race", "-o", bin, "pkiboard"}
	if os.Getenv("PKIBOARD_E2E_RACE") == "0" {
		flags = slices.Delete(flags, 1, 2)
	}
	build := exec.Command("go", flags...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build pkiboard:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// install is one pkiboard installation in a temporary directory: a config file
// and the data directories it names. Its path is kept short, because the
// daemons' operator sockets live in it.
type install struct {
	t      *testing.T
	dir    string
	config string
}

// newInstall writes a config with every daemon on an ephemeral loopback port;
// extra is TOML appended to the sections it names (keys are merged per section).
func newInstall(t *testing.T, extra map[string]string) *install {
	t.Helper()
	dir, err := os.MkdirTemp("", "pkb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("kept %s for inspection", dir)
		}
	})
	cfg := filepath.Join(dir, "pkiboard.toml")
	if err := os.WriteFile(cfg, []byte(proc.Config("debug", extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	return &install{t: t, dir: dir, config: cfg}
}

// path returns a path inside the installation.
func (in *install) path(elem ...string) string {
	return filepath.Join(append([]string{in.dir}, elem...)...)
}

// result is a finished pkiboard command.
type result struct {
	code   int
	stdout string
	stderr string
}

// run runs pkiboard with the installation's config and returns its result;
// it fails the test if the command does not finish within a minute.
func (in *install) run(env []string, args ...string) result {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config", in.config}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		in.t.Fatalf("pkiboard %s: did not finish in a minute\nstderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			in.t.Fatalf("pkiboard %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustRun is run that fails the test on a non-zero exit.
func (in *install) mustRun(env []string, args ...string) result {
	in.t.Helper()
	r := in.run(env, args...)
	if r.code != 0 {
		in.t.Fatalf("pkiboard %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// daemon is a running pkiboard process (a CA, a board, a student) of a test.
type daemon struct {
	*proc.Proc // Addr is where a CA or a board listens
	t          *testing.T
}

// start runs a daemon with the installation's config and waits until it logs
// the address it listens on. It is stopped (SIGTERM, then SIGKILL) at cleanup.
func (in *install) start(role string, args ...string) *daemon {
	in.t.Helper()
	d, err := in.tryStart(role, args...)
	if err != nil {
		in.t.Fatal(err)
	}
	return d
}

// tryStart is start that returns the daemon's failure instead of failing the test.
func (in *install) tryStart(role string, args ...string) (*daemon, error) {
	return in.tryStartWith(nil, role, args...)
}

// tryStartWith is tryStart with the daemon's command line run by prefix, a
// command that ends by exec'ing its arguments (e.g. unshare), or directly if
// prefix is empty.
func (in *install) tryStartWith(prefix []string, role string, args ...string) (*daemon, error) {
	argv := append(append(slices.Clone(prefix), bin, "--config", in.config, "--role="+role), args...)
	p, err := proc.Start(role, exec.Command(argv[0], argv[1:]...))
	if err != nil {
		return nil, err
	}
	d := &daemon{Proc: p, t: in.t}
	in.t.Cleanup(func() {
		d.stop()
		if in.t.Failed() {
			in.t.Logf("%s log:\n%s", role, d.Log())
		}
	})
	return d, nil
}

// crashed reports whether the process's standard error shows a Go panic, a
// fatal runtime error or a race report (plain text, not JSON log records).
func (d *daemon) crashed() bool {
	l := d.Log()
	return strings.Contains(l, "panic:") || strings.Contains(l, "fatal error:") || strings.Contains(l, "WARNING: DATA RACE")
}

// stop sends SIGTERM and waits up to 20s for a clean exit, then kills. It
// returns the exit code (-1 if killed).
func (d *daemon) stop() int {
	code, clean := d.Stop(20 * time.Second)
	if !clean {
		d.t.Errorf("%s did not stop within 20s of SIGTERM", d.Name)
	}
	return code
}
