package ca

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// tokenStates returns the states of sid's tokens, oldest first (all of them).
func tokenStates(t *testing.T, tc *testCA, sid string) []TokenState {
	t.Helper()
	views, err := tc.Tokens(sid, true)
	if err != nil {
		t.Fatal(err)
	}
	var states []TokenState
	for _, v := range views {
		if v.SID != sid {
			t.Fatalf("Tokens(%q) listed %q", sid, v.SID)
		}
		states = append(states, v.State)
	}
	return states
}

func equalStates(got []TokenState, want ...TokenState) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func tokenCA(t *testing.T, mod func(*Options)) *testCA {
	return newCA(t, func(o *Options) {
		o.Policy = PolicyToken
		if mod != nil {
			mod(o)
		}
	})
}

// TestNewTokenCancelsOlder: a new token for a SID cancels her older unused
// one in the same transaction; the older one is then refused as cancelled,
// with the bad-token code, and the new one enrolls.
func TestNewTokenCancelsOlder(t *testing.T) {
	tc := tokenCA(t, nil)
	old := tc.token(t, testSID)
	other := tc.token(t, "1155000002")
	tc.clock.Add(time.Minute)
	fresh := tc.token(t, testSID)
	if got := tokenStates(t, tc, testSID); !equalStates(got, TokenCancelled, TokenUnused) {
		t.Fatalf("got %v, want [cancelled unused]", got)
	}
	_, err := tc.enroll(t, testSID, old)
	r := wantRefusal(t, err, wire.CodeTokenInvalid)
	if !strings.Contains(r.Text, "was cancelled at 2026-03-01 09:01:00 UTC") {
		t.Errorf("got %q, want it to say when the token was cancelled", r.Text)
	}
	tc.mustEnroll(t, testSID, fresh)
	tc.mustEnroll(t, "1155000002", other) // another SID's token is untouched
	if got := tokenStates(t, tc, testSID); !equalStates(got, TokenCancelled, TokenUsed) {
		t.Fatalf("got %v, want [cancelled used]", got)
	}
}

// TestNewTokenLeavesUsedAndExpired: only live tokens are cancelled; a used
// or expired one keeps its state.
func TestNewTokenLeavesUsedAndExpired(t *testing.T) {
	tc := tokenCA(t, nil)
	tc.mustEnroll(t, testSID, tc.token(t, testSID))
	if _, _, err := tc.CreateToken(testSID, time.Hour); err != nil {
		t.Fatal(err)
	}
	tc.clock.Add(time.Hour) // exactly at its expiry: expired
	tc.token(t, testSID)
	if got := tokenStates(t, tc, testSID); !equalStates(got, TokenUsed, TokenExpired, TokenUnused) {
		t.Fatalf("got %v, want [used expired unused]", got)
	}
}

// TestBoardTokensDoNotCancel: each board enrolls with its own token, so a
// new board token cancels none.
func TestBoardTokensDoNotCancel(t *testing.T) {
	tc := tokenCA(t, nil)
	first := tc.boardToken(t)
	tc.boardToken(t)
	if _, _, err := tc.enrollKey(t, wire.ProfileBoard, testBoard, first); err != nil {
		t.Fatalf("the first board token was cancelled by the second: %v", err)
	}
}

// TestCancelTokens: cancel marks every live token of the SID cancelled (and
// only those), and the cancelled token is refused.
func TestCancelTokens(t *testing.T) {
	tc := tokenCA(t, nil)
	tc.mustEnroll(t, testSID, tc.token(t, testSID))
	live := tc.token(t, testSID)
	otherTok := tc.token(t, "1155000002")
	tc.clock.Add(time.Minute)
	n, err := tc.CancelTokens(testSID)
	if err != nil || n != 1 {
		t.Fatalf("got %d, %v, want 1 cancelled", n, err)
	}
	if got := tokenStates(t, tc, testSID); !equalStates(got, TokenUsed, TokenCancelled) {
		t.Fatalf("got %v, want [used cancelled]", got)
	}
	views, _ := tc.Tokens(testSID, true)
	if !views[1].Cancelled.Equal(t0.Add(time.Minute)) {
		t.Errorf("cancelled at %v, want %v", views[1].Cancelled, t0.Add(time.Minute))
	}
	_, err = tc.enroll(t, testSID, live)
	if r := wantRefusal(t, err, wire.CodeTokenInvalid); !strings.Contains(r.Text, "cancelled") {
		t.Errorf("got %q, want it to say cancelled", r.Text)
	}
	if n, err := tc.CancelTokens(testSID); err != nil || n != 0 {
		t.Fatalf("cancelling again: got %d, %v, want 0", n, err)
	}
	tc.mustEnroll(t, "1155000002", otherTok)
	if _, err := tc.CancelTokens("nope"); err == nil {
		t.Fatal("cancelled the tokens of a SID that does not match the pattern")
	}
	if len(tc.logs.FilterMessage("enrollment tokens cancelled").All()) != 2 {
		t.Error("the cancellations are not logged")
	}
}

// TestCancelledNeedsSignature: the refusal says "cancelled" only to a request
// signed with the token's key; a forged signature hears that it does not
// verify.
func TestCancelledNeedsSignature(t *testing.T) {
	tc := tokenCA(t, nil)
	tok := tc.token(t, testSID)
	if _, err := tc.CancelTokens(testSID); err != nil {
		t.Fatal(err)
	}
	r := tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, newKey(t), testSID), tok)
	r.Signature[0] ^= 1
	_, err := tc.Enroll(context.Background(), r)
	if ref := wantRefusal(t, err, wire.CodeTokenInvalid); strings.Contains(ref.Text, "cancelled") || !strings.Contains(ref.Text, "does not verify") {
		t.Errorf("got %q, want the bad-signature sentence", ref.Text)
	}
}

// TestTokensListing: the listing's states and filters, with the clock.
func TestTokensListing(t *testing.T) {
	tc := tokenCA(t, nil)
	iss := tc.mustEnroll(t, testSID, tc.token(t, testSID))
	if _, _, err := tc.CreateToken("1155000002", time.Hour); err != nil {
		t.Fatal(err)
	}
	tc.token(t, "1155000003")
	tc.boardToken(t)
	tc.clock.Add(time.Hour - time.Second)
	unused, err := tc.Tokens("", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(unused) != 4 { // the first start's board token, 1155000002, 1155000003, the board's
		t.Fatalf("got %+v, want 4 unused", unused)
	}
	tc.clock.Add(time.Second)
	all, err := tc.Tokens("", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		sid     string
		profile string
		state   TokenState
	}{
		{testBoard, "board", TokenUnused}, {testSID, "student", TokenUsed}, {"1155000002", "student", TokenExpired}, {"1155000003", "student", TokenUnused}, {testBoard, "board", TokenUnused},
	}
	if len(all) != len(want) {
		t.Fatalf("got %+v, want %d tokens", all, len(want))
	}
	for i, w := range want {
		if all[i].SID != w.sid || all[i].Profile != w.profile || all[i].State != w.state {
			t.Errorf("token %d: got %+v, want %+v", i, all[i], w)
		}
	}
	if all[1].Serial == "" || all[1].Serial != keys.SerialHex(iss.Certificate.SerialNumber) {
		t.Errorf("used token's serial %q, want the certificate's %x", all[1].Serial, iss.Certificate.SerialNumber)
	}
	if unused, _ := tc.Tokens("1155000002", false); len(unused) != 0 {
		t.Errorf("an expired token is listed as unused: %+v", unused)
	}

	// The read-only store lists the same.
	recs, err := OpenRecords(tc.opts.Dir, tc.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer recs.Close()
	ro, err := recs.Tokens("1155000003", false)
	if err != nil || len(ro) != 1 || ro[0].State != TokenUnused {
		t.Fatalf("got %+v, %v, want one unused token", ro, err)
	}
}

// TestRosterTokens: one token per roster SID without a live token or a valid
// certificate; with renew, one for everyone, cancelling the older ones.
func TestRosterTokens(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "roster.csv", []byte("sid,name,email\n1155000001,Ada,ada@example.edu\n1155000002,Grace\n1155000003\n1155000004\n"))
	tc := tokenCA(t, func(o *Options) { o.RosterFile = path })
	tc.mustEnroll(t, "1155000001", tc.token(t, "1155000001")) // holds a certificate
	tc.token(t, "1155000002")                                 // holds a live token
	if _, _, err := tc.CreateToken("1155000003", time.Minute); err != nil {
		t.Fatal(err)
	}
	tc.clock.Add(time.Minute) // 1155000003's token expired

	got, err := tc.RosterTokens(0, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Tokens) != 2 || got.Tokens[0].SID != "1155000003" || got.Tokens[1].SID != "1155000004" || got.HoldToken != 1 || got.HoldCertificate != 1 {
		t.Fatalf("got %+v, want tokens for 1155000003 and 1155000004, one holding a token, one a certificate", got)
	}
	if !got.Tokens[0].Expires.Equal(tc.clock.Now().Add(tc.opts.TokenTTL)) {
		t.Errorf("expires %v, want now + token_ttl", got.Tokens[0].Expires)
	}
	// Run again: nobody lacks a token now.
	if again, err := tc.RosterTokens(0, false); err != nil || len(again.Tokens) != 0 || again.HoldToken != 3 {
		t.Fatalf("got %+v, %v, want no tokens", again, err)
	}
	renewed, err := tc.RosterTokens(2*time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(renewed.Tokens) != 4 || renewed.Tokens[0].Name != "Ada" || renewed.Tokens[0].Email != "ada@example.edu" || renewed.Tokens[1].Name != "Grace" {
		t.Fatalf("got %+v, want four tokens with the roster's names", renewed)
	}
	if got := tokenStates(t, tc, "1155000002"); !equalStates(got, TokenCancelled, TokenUnused) {
		t.Fatalf("1155000002: got %v, want [cancelled unused]", got)
	}
	for _, rt := range renewed.Tokens {
		tc.mustEnroll(t, rt.SID, rt.Token)
	}
	for _, l := range tc.logs.All() {
		for _, f := range l.Context {
			for _, rt := range renewed.Tokens {
				if strings.Contains(f.String, rt.Token) {
					t.Fatalf("a token was logged: %q", l.Message)
				}
			}
		}
	}
}

func TestRosterTokensRefusals(t *testing.T) {
	if _, err := tokenCA(t, nil).RosterTokens(0, false); err == nil || !strings.Contains(err.Error(), "ca.roster_file") {
		t.Errorf("without a roster: got %v, want an error naming ca.roster_file", err)
	}
	path := filepath.Join(t.TempDir(), "roster.csv")
	writeFile(t, filepath.Dir(path), "roster.csv", []byte("1155000001\n"))
	tc := tokenCA(t, func(o *Options) {
		o.RosterFile = path
		o.SIDPattern = regexp.MustCompile(`^(?:[0-9]{10}|blackboard)$`)
	})
	writeFile(t, filepath.Dir(path), "roster.csv", []byte("1155000001\nblackboard\n"))
	tc.clock.Add(time.Second)
	if _, err := tc.RosterTokens(0, false); err == nil || !strings.Contains(err.Error(), "board's name") {
		t.Errorf("a roster with the board's name: got %v", err)
	}
	if views, _ := tc.Tokens("1155000001", true); len(views) != 0 {
		t.Errorf("tokens made despite the error: %+v", views)
	}
}
