package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/proc"
)

// revokeLine is what `pkiboard revoke` prints.
var revokeLine = regexp.MustCompile(`^revoked 1 certificate\(s\); CRL (\d+) issued; (\d+) of (\d+) watching boards installed it \(boards not watching fetch it within board\.crl_refresh\)\n$`)

// TestRevocationIsEnforcedWhenRevokeReturns is the test of finding 4: a
// student revoked for keyCompromise submitted right after `revoke` answered,
// because the board polled the CRL every crl_refresh. Now the board watches
// the CA, which pushes the new CRL and waits for it to be installed: the
// next session after `revoke` returns is refused. No clock in the assertion —
// the board polls only every hour here, so only the push can have done it,
// and revoke's "1 of 1" is the synchronisation. It also prints the latency
// from revoke to enforcement.
//
// The CA's idle_timeout is one second, and the watch sits idle for longer
// before the revocation: the watch is exempt from idle_timeout and the
// minimum rate, so the board never had to connect again.
func TestRevocationIsEnforcedWhenRevokeReturns(t *testing.T) {
	s := startSystem(t, map[string]string{
		"ca":    `idle_timeout = "1s"`,
		"board": `crl_refresh = "1h"`,
	})
	ids := s.path("ids")
	for _, sid := range []string{"mallory", "alice"} {
		if r := s.student(nil, "--ids", sid, "--data-dir", ids); r.code != 0 {
			t.Fatalf("%s before the revocation: exit %d\n%s", sid, r.code, r.stderr)
		}
	}
	// The watch idles for longer than idle_timeout (and far below the
	// minimum rate); it must not be cut off for it.
	time.Sleep(2500 * time.Millisecond)

	start := time.Now()
	r := s.mustRun(nil, "revoke", "--sid", "mallory", "--reason", "keyCompromise")
	took := time.Since(start)
	m := revokeLine.FindStringSubmatch(r.stdout)
	if m == nil || m[2] != "1" || m[3] != "1" {
		t.Fatalf("revoke printed %q, want the new CRL installed by 1 of 1 watching boards", r.stdout)
	}
	r = s.student(nil, "--ids", "mallory", "--data-dir", ids)
	if r.code == 0 || !strings.Contains(r.stderr, "mallory: refused (cert-revoked)") {
		t.Errorf("mallory's next session after revoke returned: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r := s.student(nil, "--ids", "alice", "--data-dir", ids); r.code != 0 {
		t.Errorf("alice after mallory's revocation: exit %d\n%s", r.code, r.stderr)
	}
	// Again, on the same watch.
	r2 := s.mustRun(nil, "revoke", "--sid", "alice", "--reason", "affiliationChanged")
	if m2 := revokeLine.FindStringSubmatch(r2.stdout); m2 == nil || m2[2] != "1" || m2[3] != "1" {
		t.Errorf("the second revoke printed %q, want the CRL installed by 1 of 1 watching boards", r2.stdout)
	}
	if n := s.ca.Logged("board watching"); n != 1 {
		t.Errorf("the CA logged %d watches, want 1: the watch was cut off and the board connected again", n)
	}
	for _, ended := range []string{"watch ended", "board stopped watching"} {
		if s.ca.Logged(ended) != 0 {
			t.Errorf("the CA logged %q: the watch did not last", ended)
		}
	}
	if st := s.stats("ca"); st.WatchingBoards == nil || *st.WatchingBoards != 1 {
		t.Errorf("the CA's stats say %v boards watching, want 1", st.WatchingBoards)
	}
	if st := s.stats("board"); st.WatchingBoards != nil {
		t.Errorf("the board's stats say %d boards watching; the field is the CA's", *st.WatchingBoards)
	}
	if n := s.board.Logged("CRL installed"); n != 3 {
		t.Errorf("the board logged %d CRLs installed, want 3 (at start, and the two pushed)", n)
	}
	issued, installed := logTime(t, s.ca.Proc, "CRL issued", m[1]), logTime(t, s.board.Proc, "CRL installed", m[1])
	t.Logf("revocation to enforcement: `pkiboard revoke` returned after %v with the board enforcing CRL %s "+
		"(the CA issued it at %s, the board installed it %v later); before: up to board.crl_refresh (1m)",
		took.Round(time.Millisecond), m[1], issued.Format("15:04:05.000"), installed.Sub(issued))
}

// logTime returns the time of p's log line msg whose number field is n.
func logTime(t *testing.T, p *proc.Proc, msg, n string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := p.WaitFor(ctx, 0, 10*time.Second, func(r proc.Record) bool { return r.Msg() == msg && r.Str("number") == n })
	if rec == nil {
		t.Fatalf("%s did not log %q for CRL %s", p.Name, msg, n)
	}
	ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", rec.Str("time"))
	if err != nil {
		t.Fatalf("%s: time of %q: %v", p.Name, msg, err)
	}
	return ts
}
