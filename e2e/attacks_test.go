package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/attacklab"
)

// TestAttacks plays every row of the attack table (what `make attacks`
// prints) against a real CA and board: the scenarios with the adversary as a
// real process between the student and the board, then the boundary attacks
// (the CA exchange observed and held back, a stolen board token and key, a
// stale status, strangers' floods, forged evidence, revocation). Each attack
// must be defeated, by the party and with the error code its row names, and
// nothing may be stored, issued, read or written that the attack was after.
// A row fails if its defence is removed: the attack then either succeeds or
// is stopped by another check.
func TestAttacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress strings.Builder
	lab, err := attacklab.Start(ctx, attacklab.Options{Bin: bin, Log: &progress})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("stopping the lab: %v", err)
		}
	})
	for _, row := range attacklab.Rows() {
		t.Run(row.ID, func(t *testing.T) {
			r := lab.Play(ctx, row)
			t.Logf("%s: %s in %s; %s; %s", r.Name, r.Verdict, r.Elapsed.Round(time.Millisecond), r.Detected, r.Outcome)
			if r.Verdict != attacklab.Defeated {
				t.Errorf("%s: %s:\n  %s", r.Name, r.Verdict, strings.Join(r.Problems, "\n  "))
				t.Logf("evidence:\n%s", r.Evidence)
			}
		})
	}
}

// TestAttackRoleFlags checks how the adversary role is asked for: what it
// needs, and that its flags belong to it alone.
func TestAttackRoleFlags(t *testing.T) {
	in := newInstall(t, nil)
	status := in.path("status.bin")
	if err := os.WriteFile(status, []byte("a status"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no attack", []string{"--role=adversary", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1"}, 2,
			"needs --listen ADDR, --upstream ADDR (the board) and --attack NAME"},
		{"unknown attack", []string{"--role=adversary", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--attack", "sniff"}, 2,
			`--attack "sniff": the attacks are eavesdrop, tamper`},
		{"attack flag on the CA", []string{"--role=ca", "--attack", "tamper"}, 2, "--attack applies only to --role=adversary"},
		{"status flag on the board", []string{"--role=board", "--status", "status.bin"}, 2, "--status applies only to --role=adversary"},
		{"status for another attack", []string{"--role=adversary", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--attack", "tamper", "--status", status}, 1,
			"a board status to staple applies to impersonate-board only"},
		{"data dir", []string{"--role=adversary", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--attack", "tamper", "--data-dir", "x"}, 2,
			"--data-dir does not apply to the adversary role"},
		{"swap-cert without a certificate", []string{"--role=adversary", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--attack", "swap-cert"}, 1,
			"swap-cert needs the adversary's own certificate and key"},
		{"cert without key", []string{"--role=adversary", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:1", "--attack", "tamper", "--cert", "c.pem"}, 1,
			"give --cert and --key together"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := in.run(nil, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", r.code, r.stderr, tt.code, tt.want)
			}
		})
	}
	if r := in.run(nil, "--help"); !strings.Contains(r.stdout, "steal-session-key") {
		t.Errorf("--help does not list the attacks:\n%s", r.stdout)
	}
}
