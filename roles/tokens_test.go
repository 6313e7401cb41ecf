package roles

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"pkiboard/internal/config"
)

// tokenConfig returns the configuration of a CA with a roster of three, made
// once and closed: the operator commands then open it themselves.
func tokenConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.CA.DataDir = t.TempDir()
	cfg.CA.Policy = "token"
	cfg.CA.KeyPassphraseEnv = "PKIBOARD_TEST_CA_PASSPHRASE"
	t.Setenv(cfg.CA.KeyPassphraseEnv, "correct horse battery staple")
	cfg.CA.RosterFile = filepath.Join(t.TempDir(), "roster.csv")
	roster := "sid,name,email\n1155000001,Ada Lovelace,ada@example.edu\n1155000002,\"Hopper, Grace\"\n1155000003\n"
	if err := os.WriteFile(cfg.CA.RosterFile, []byte(roster), 0o644); err != nil {
		t.Fatal(err)
	}
	auth, err := openAuthority(cfg, zap.NewNop(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRosterTokensFile: the CSV holds one row per student, mode 0600; an
// existing file is refused before any token is made; the message names no
// token.
func TestRosterTokensFile(t *testing.T) {
	cfg := tokenConfig(t)
	out := filepath.Join(t.TempDir(), "tokens.csv")
	var msg bytes.Buffer
	if err := RosterTokens(t.Context(), cfg, RosterTokenArgs{}, out, &msg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
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
	if len(rows) != 4 || strings.Join(rows[0], ",") != "sid,name,email,token,expires" {
		t.Fatalf("got %q, want a header and three rows", rows)
	}
	if rows[1][0] != "1155000001" || rows[1][1] != "Ada Lovelace" || rows[1][2] != "ada@example.edu" || rows[2][1] != "Hopper, Grace" || rows[3][2] != "" {
		t.Errorf("got %q, want the roster's names and emails", rows)
	}
	for _, r := range rows[1:] {
		if !strings.HasPrefix(r[3], "pkbt_") || len(r[3]) != len("pkbt_")+43 {
			t.Errorf("token %q is not 32 bytes of base64url", r[3])
		}
		if strings.Contains(msg.String(), r[3]) {
			t.Errorf("the message shows a token: %s", msg.String())
		}
	}
	if !strings.Contains(msg.String(), "wrote 3 one-time enrollment token(s)") || !strings.Contains(msg.String(), "secrets") {
		t.Errorf("got %q, want the count and the warning", msg.String())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".pkiboard-tokens-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// The file exists: refused, and no token made.
	err = RosterTokens(t.Context(), cfg, RosterTokenArgs{Renew: true}, out, &msg)
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("got %v, want the existing file refused", err)
	}
	var list bytes.Buffer
	if err := ListTokens(t.Context(), cfg, "", true, false, &list); err != nil {
		t.Fatal(err)
	}
	if strings.Count(list.String(), "cancelled") != 0 || strings.Count(list.String(), "student") != 3 {
		t.Errorf("tokens after the refusal:\n%s\nwant the three first ones, none cancelled", list.String())
	}

	// Run again without --renew: nobody needs one.
	msg.Reset()
	again := filepath.Join(t.TempDir(), "again.csv")
	if err := RosterTokens(t.Context(), cfg, RosterTokenArgs{}, again, &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.String(), "wrote 0") || !strings.Contains(msg.String(), "passed over 3 student(s) holding an unused token") {
		t.Errorf("got %q", msg.String())
	}
}

// TestCancelAndListTokens: token --cancel, then tokens shows the state.
func TestCancelAndListTokens(t *testing.T) {
	cfg := tokenConfig(t)
	var out bytes.Buffer
	for range 2 {
		if err := CreateToken(t.Context(), cfg, TokenArgs{SID: "1155000002"}, &out); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if err := CancelTokens(t.Context(), cfg, "1155000002", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cancelled 1 unused token(s) of SID 1155000002") {
		t.Errorf("got %q", out.String())
	}
	out.Reset()
	if err := ListTokens(t.Context(), cfg, "1155000002", true, false, &out); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Count(s, "cancelled") != 2 || strings.Contains(s, "pkbt_") {
		t.Errorf("tokens --all:\n%s\nwant two cancelled, no secret", s)
	}
	out.Reset()
	if err := ListTokens(t.Context(), cfg, "1155000002", false, true, &out); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("tokens --json: got %s, want []", out.String())
	}
}

// TestTokenFileFormats: student.token_file and enroll --token-file read one
// format — "SID TOKEN" lines, or a bare token where one SID is meant.
func TestTokenFileFormats(t *testing.T) {
	tests := []struct {
		name, file string
		ids        []string
		want       map[string]string
		err        string
	}{
		{name: "lines", file: "# tokens\n1155000001 tokA\n\n1155000002  tokB\n", ids: []string{"1155000001", "1155000002"},
			want: map[string]string{"1155000001": "tokA", "1155000002": "tokB"}},
		{name: "bare", file: "tokA\n", ids: []string{"1155000001"}, want: map[string]string{"1155000001": "tokA"}},
		{name: "bare for two", file: "tokA\n", ids: []string{"1155000001", "1155000002"}, err: "holds a bare token, for one SID, but 2 IDs"},
		{name: "bare among lines", file: "tokA\n1155000002 tokB\n", ids: []string{"1155000001"}, err: "a bare token must be alone"},
		{name: "three fields", file: "1155000001 tokA extra\n", ids: []string{"1155000001"}, err: ":1: want \"SID TOKEN\" or a bare token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readTokenFile(path, "student.token_file", tt.ids)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want an error saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v want %v", got, tt.want)
			}
			for sid, tok := range tt.want {
				if got[sid] != tok {
					t.Errorf("%s: got %q want %q", sid, got[sid], tok)
				}
			}
			if len(tt.ids) == 1 {
				tok, err := TokenFor(path, tt.ids[0])
				if err != nil || tok != tt.want[tt.ids[0]] {
					t.Errorf("TokenFor: got %q, %v; want %q", tok, err, tt.want[tt.ids[0]])
				}
			}
		})
	}
}

// TestReadOnlyCommandsNeedNoPassphrase: certs and crl, run with the CA
// stopped, read its data directory without the root key, so without its
// passphrase (key_passphrase_env names a variable that is not set).
func TestReadOnlyCommandsNeedNoPassphrase(t *testing.T) {
	cfg := tokenConfig(t)
	os.Unsetenv(cfg.CA.KeyPassphraseEnv) // t.Setenv restores it
	var out bytes.Buffer
	if err := ListCertificates(t.Context(), cfg, "", false, &out); err != nil {
		t.Errorf("certs: %v", err)
	}
	if err := PrintCRL(t.Context(), cfg, false, &out); err != nil {
		t.Errorf("crl: %v", err)
	}
}
