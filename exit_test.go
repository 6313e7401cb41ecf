package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binary is the pkiboard executable TestMain builds for the tests that run
// it as a person would (TestExitStatus).
var binary string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pkiboard-main-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "pkiboard")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// TestExitStatus runs the binary over command-line mistakes (exit status 2),
// failures of the work (1) and plain successes (0), and checks that stderr
// names the mistake or the failure and says what to do.
func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.toml")
	badListen := filepath.Join(dir, "bad-listen.toml")
	for path, text := range map[string]string{empty: "", badListen: "[ca]\nlisten = \"nowhere\"\n"} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	closed := closedAddr(t)
	const (
		mistake = 2
		failure = 1
	)
	tests := []struct {
		name      string
		args      []string
		code      int
		stderr    []string // each must appear
		notStderr string   // must not appear, when set
	}{
		// Mistakes in the command line.
		{"unknown flag", []string{"--bogus"}, mistake, []string{"-bogus", "see pkiboard --help"}, ""},
		{"unknown command", []string{"frob"}, mistake, []string{`unknown command "frob"`, "see pkiboard --help"}, ""},
		{"unknown flag of a command", []string{"certs", "--bogus"}, mistake, []string{"certs:", "-bogus", "see pkiboard certs --help"}, ""},
		{"flag without its value", []string{"certs", "--sid"}, mistake, []string{"-sid", "see pkiboard certs --help"}, ""},
		{"required flags missing", []string{"extend", "--sid", "1155000001"}, mistake,
			[]string{"extend needs --assignment, --until and --reason", "see pkiboard extend --help"}, ""},
		{"a number that is not one", []string{"activate", "--assignment", "lab", "--sid", "1155000001", "--version", "two"}, mistake,
			[]string{`"two"`, "-version", "see pkiboard activate --help"}, ""},
		{"version 0", []string{"activate", "--assignment", "lab", "--sid", "1155000001", "--version", "0"}, mistake,
			[]string{"--version 0", "numbered from 1"}, ""},
		{"a serial that is not hex", []string{"revoke", "--serial", "zz"}, mistake,
			[]string{`--serial: "zz" is not a hexadecimal serial number`, "pkiboard certs", "see pkiboard revoke --help"}, ""},
		{"a reason there is none of", []string{"revoke", "--sid", "1155000001", "--reason", "bored"}, mistake,
			[]string{`"bored"`, "keyCompromise", "see pkiboard revoke --help"}, ""},
		{"a reason the CA refuses", []string{"revoke", "--sid", "1155000001", "--reason", "certificateHold"}, mistake,
			[]string{"certificateHold is not supported", "see pkiboard revoke --help"}, ""},
		{"a duration that is not one", []string{"token", "--sid", "1155000001", "--ttl", "3x"}, mistake,
			[]string{`--ttl "3x"`, "72h, 3d or 2w", "see pkiboard token --help"}, ""},
		{"a time without its zone", []string{"extend", "--assignment", "lab", "--sid", "1155000001", "--until", "tomorrow", "--reason", "ill"}, mistake,
			[]string{`--until "tomorrow"`, "2026-11-29T23:59:00+08:00", "see pkiboard extend --help"}, ""},
		{"a role flag before a command that does not take it", []string{"--board-addr", closed, "certs"}, mistake,
			[]string{"--board-addr does not apply", "see pkiboard certs --help"}, ""},
		{"a daemon flag after a command's name", []string{"certs", "--listen", closed}, mistake,
			[]string{"-listen", "see pkiboard certs --help"}, ""},
		{"an argument to a command that takes none", []string{"certs", "1155000001"}, mistake,
			[]string{`"1155000001"`, "takes no arguments", "see pkiboard certs --help"}, ""},
		{"two answers to one question", []string{"token", "--sid", "1155000001", "--sid", "1155000002"}, mistake,
			[]string{"given twice", "see pkiboard token --help"}, ""},
		{"choices that exclude each other", []string{"token", "--sid", "1155000001", "--board"}, mistake,
			[]string{"give one of --sid SID, --board and --roster", "see pkiboard token --help"}, ""},
		{"no receipt to verify", []string{"verify-receipt"}, mistake,
			[]string{"give one receipt file", "see pkiboard verify-receipt --help"}, ""},
		{"backup of a role that keeps nothing", []string{"backup", "--role", "student", "--out", "x.tar"}, mistake,
			[]string{"give --role ca or --role board", "see pkiboard backup --help"}, ""},
		{"misspelt role, said to be the flag's", []string{"--role=studnet"}, mistake,
			[]string{`--role "studnet" is not one of ca, board, student, adversary`}, empty},
		{"no role at all", nil, mistake, []string{"no role", "--role=ca", empty}, ""},
		{"a flag of another role", []string{"--role=ca", "--ids", "1155000001"}, mistake, []string{"--ids applies only to --role=student"}, ""},
		{"the student without IDs", []string{"--role=student"}, mistake, []string{"needs --ids"}, ""},
		{"a config file that is not there", []string{"--config", filepath.Join(dir, "missing.toml"), "--role=ca"}, mistake,
			[]string{"missing.toml does not exist", "--config FILE"}, ""},
		{"a bad value in the config file", []string{"--config", badListen, "--role=ca"}, mistake,
			[]string{badListen, `ca.listen: "nowhere"`}, ""},

		// Failures of the work.
		{"no CA in the data directory", []string{"certs"}, failure, []string{"holds no CA", "pkiboard --role=ca"}, ""},
		{"no board running", []string{"stats", "--role", "board"}, failure, []string{"no board is running", "pkiboard --role=board"}, ""},
		{"nothing where the CA should be", []string{"enroll", "--sid", "1155000001", "--out", filepath.Join(dir, "out"), "--ca-addr", closed}, failure,
			[]string{closed}, ""},
		{"the student, with nothing where the CA should be", []string{"--role=student", "--ids", "1155000001", "--ca-addr", closed, "--board-addr", closed}, failure,
			[]string{"1 of 1 IDs failed", "1155000001", closed}, ""},
		{"a receipt that is not there", []string{"verify-receipt", "--root", filepath.Join(dir, "root.pem"), filepath.Join(dir, "000001.json")}, failure,
			[]string{"000001.json"}, ""},

		// Successes.
		{"help", []string{"--help"}, 0, nil, ""},
		{"a command's help", []string{"certs", "--help"}, 0, nil, ""},
		{"version", []string{"--version"}, 0, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !hasConfig(args) {
				args = append([]string{"--config", empty}, args...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "PKIBOARD_TOKEN=")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("pkiboard %s: exit status: got %d want %d; stderr:\n%s", strings.Join(args, " "), code, tt.code, &stderr)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr: got %q, want it to contain %q", &stderr, s)
				}
			}
			if tt.notStderr != "" && strings.Contains(stderr.String(), tt.notStderr) {
				t.Errorf("stderr: got %q, want no %q", &stderr, tt.notStderr)
			}
		})
	}
}

// hasConfig reports whether args name a config file.
func hasConfig(args []string) bool {
	for _, a := range args {
		if a == "--config" || strings.HasPrefix(a, "--config=") {
			return true
		}
	}
	return false
}

// closedAddr returns an address of this machine nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
