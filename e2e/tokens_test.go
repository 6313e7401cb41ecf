package e2e

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"pkiboard/ca"
	"pkiboard/wire"
)

// enrollText sends one EnrollRequest and returns the CA's refusal (nil when
// it issued the certificate).
func enrollText(t *testing.T, wc *wire.Conn, req *wire.EnrollRequest) *wire.Error {
	t.Helper()
	if err := wc.WriteMessage(req); err != nil {
		t.Fatal(err)
	}
	_, err := wire.Expect[*wire.EnrollAccepted](wc.ReadMessage())
	var werr *wire.Error
	if errors.As(err, &werr) {
		return werr
	}
	if err != nil {
		t.Fatalf("enroll %s: %v", req.SID, err)
	}
	return nil
}

// TestRosterTokensEnrollOnce: against a running CA, token --roster writes one
// token per roster SID to a new 0600 CSV; each enrolls once with the real
// client and is spent after; a cancelled token, and one a newer token
// replaced, are refused as token-invalid saying they were cancelled.
func TestRosterTokensEnrollOnce(t *testing.T) {
	in := newInstall(t, map[string]string{
		"ca": "policy = \"token\"\nroster_file = \"roster.csv\"\nsid_pattern = \"^1155[0-9]{6}$\"",
	})
	roster := "sid,name,email\n# spring term\n1155000001,Ada Lovelace,ada@example.edu\n1155000002,\"Hopper, Grace\",grace@example.edu\n1155000003\n1155000004,Alan\n1155000005\n1155000006\n"
	if err := os.WriteFile(in.path("roster.csv"), []byte(roster), 0o600); err != nil {
		t.Fatal(err)
	}
	caProc := in.start("ca")
	// 1155000005 and 1155000006 get tokens of their own first: token --roster
	// passes them over.
	cancelled := in.token(t, "--sid", "1155000005")
	replaced := in.token(t, "--sid", "1155000006")
	newest := in.token(t, "--sid", "1155000006")
	in.mustRun(nil, "token", "--cancel", "--sid", "1155000005")

	out := in.path("tokens.csv")
	r := in.mustRun(nil, "token", "--roster", "--out", out)
	if !strings.Contains(r.stderr, "wrote 5 one-time enrollment token(s)") || !strings.Contains(r.stderr, "secrets") ||
		!strings.Contains(r.stderr, "passed over 1 student(s) holding an unused token") {
		t.Errorf("stderr: %q, want 5 tokens, one passed over, and the warning", r.stderr)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", out, fi, err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// 1155000005's token was cancelled, so she is given a new one.
	wantSIDs := []string{"1155000001", "1155000002", "1155000003", "1155000004", "1155000005"}
	if len(rows) != 1+len(wantSIDs) {
		t.Fatalf("got %q, want a header and %d rows", rows, len(wantSIDs))
	}
	for i, sid := range wantSIDs {
		if rows[1+i][0] != sid {
			t.Errorf("row %d: got %q, want %s", 1+i, rows[1+i], sid)
		}
		if strings.Contains(r.stderr+r.stdout+caProc.Log(), rows[1+i][3]) {
			t.Errorf("the token of %s was shown or logged", sid)
		}
	}
	if rows[2][1] != "Hopper, Grace" || rows[2][2] != "grace@example.edu" {
		t.Errorf("row 2: got %q, want the roster's name and email", rows[2])
	}
	if again := in.run(nil, "token", "--roster", "--out", out); again.code == 0 || !strings.Contains(again.stderr, "exists") {
		t.Errorf("an existing file: exit %d, %q; want it refused", again.code, again.stderr)
	}

	// Each token enrolls once, with the real client...
	for _, row := range rows[1:] {
		sid := row[0]
		in.mustRun([]string{"PKIBOARD_TOKEN=" + row[3]}, "enroll", "--sid", sid, "--out", in.path("students", sid), "--ca-addr", caProc.Addr)
	}
	// ... and never again.
	wc := dialCA(t, caProc.Addr)
	fp := rootFP(t, in.path("data/ca/root.pem"))
	for _, row := range rows[1:] {
		if e := enrollText(t, wc, enrollRequest(t, 1, row[0], makeCSR(t, ecKey(), row[0]), fp, row[3])); e == nil || e.Code != wire.CodeTokenUsed {
			t.Errorf("second use of %s's token: got %v, want token-used", row[0], e)
		}
	}
	// The cancelled and the replaced tokens are refused, saying so; the
	// newest one enrolls.
	for sid, tok := range map[string]string{"1155000005": cancelled, "1155000006": replaced} {
		e := enrollText(t, wc, enrollRequest(t, 1, sid, makeCSR(t, ecKey(), sid), fp, tok))
		if e == nil || e.Code != wire.CodeTokenInvalid || !strings.Contains(e.Text, "was cancelled at") {
			t.Errorf("%s's cancelled token: got %v, want token-invalid saying it was cancelled", sid, e)
		}
	}
	if e := enrollText(t, wc, enrollRequest(t, 1, "1155000006", makeCSR(t, ecKey(), "1155000006"), fp, newest)); e != nil {
		t.Errorf("the newest token: %v", e)
	}

	// tokens lists them all, with no secret.
	list := in.mustRun(nil, "tokens", "--all", "--json")
	var views []ca.TokenView
	if err := json.Unmarshal([]byte(list.stdout), &views); err != nil {
		t.Fatal(err)
	}
	states := map[ca.TokenState]int{}
	for _, v := range views {
		if v.Profile == "student" {
			states[v.State]++
		}
	}
	if states[ca.TokenUsed] != 6 || states[ca.TokenCancelled] != 2 || states[ca.TokenUnused] != 0 || strings.Contains(list.stdout, "pkbt_") {
		t.Errorf("tokens --all: got %v\n%s\nwant 6 used, 2 cancelled, no secret", states, list.stdout)
	}
	if r := in.mustRun(nil, "tokens"); strings.Contains(r.stdout, "1155") {
		t.Errorf("tokens (unused only) lists students:\n%s", r.stdout)
	}
}
