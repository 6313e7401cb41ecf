package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pkiboard/internal/keys"
)

// TestRevokedStudentEnrollsAgain: a student whose certificate was revoked is
// refused cert-revoked by the board; the student role moves its key and
// certificate aside and, with a new token, enrolls a new key pair and
// submits in the same run; without a token it says how to get one.
func TestRevokedStudentEnrollsAgain(t *testing.T) {
	in := newInstall(t, map[string]string{
		"ca": "policy = \"token\"\nroster_file = \"roster.txt\"\nsid_pattern = \"^1155[0-9]{6}$\"",
	})
	if err := os.WriteFile(in.path("roster.txt"), []byte("1155000001\n1155000002\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &system{install: in}
	s.ca = in.start("ca")
	s.board = in.start("board", "--ca-addr", s.ca.Addr)
	dir := s.path("ids")

	for _, tc := range []struct {
		name  string
		sid   string
		token bool // the rerun after the revocation holds a new token
		code  int
		wants []string // in stdout and stderr
	}{
		{"with a new token", "1155000001", true, 0, []string{
			"1155000001 the board refused the certificate (cert-revoked); enrolling again with a new key pair",
			"1155000001 submitted: receipt",
		}},
		{"without a token", "1155000002", false, 1, []string{
			"1155000002: refused (cert-revoked): ",
			"ask the course staff for a new token: `pkiboard token --sid 1155000002` on the CA machine; then rerun with PKIBOARD_TOKEN=… or a `1155000002 TOKEN` line in student.token_file",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sidDir := filepath.Join(dir, tc.sid)
			tokenEnv := func() []string { return []string{"PKIBOARD_TOKEN=" + s.token(t, "--sid", tc.sid)} }
			if r := s.student(tokenEnv(), "--ids", tc.sid, "--data-dir", dir); r.code != 0 {
				t.Fatalf("first submission: exit %d\n%s", r.code, r.stderr)
			}
			first, err := keys.ReadCertificate(filepath.Join(sidDir, "cert.pem"))
			if err != nil {
				t.Fatal(err)
			}
			serial := keys.SerialHex(first.SerialNumber)
			s.mustRun(nil, "revoke", "--sid", tc.sid, "--reason", "keyCompromise")

			var env []string
			if tc.token {
				env = tokenEnv()
			}
			r := s.student(env, "--ids", tc.sid, "--data-dir", dir)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
			}
			for _, want := range tc.wants {
				if !strings.Contains(r.stdout+r.stderr, want) {
					t.Errorf("the output does not say %q\nstdout:\n%s\nstderr:\n%s", want, r.stdout, r.stderr)
				}
			}
			// The revoked certificate's key is kept aside, never used again.
			for _, name := range []string{"key.pem", "cert.pem"} {
				if _, err := os.Stat(filepath.Join(sidDir, name+".cert-revoked-"+serial)); err != nil {
					t.Errorf("%s of the revoked certificate is not kept aside: %v", name, err)
				}
			}
			cert, err := keys.ReadCertificate(filepath.Join(sidDir, "cert.pem"))
			switch {
			case !tc.token && err == nil:
				t.Error("without a token, cert.pem is still there")
			case tc.token && err != nil:
				t.Fatalf("with a token, no new cert.pem: %v", err)
			case tc.token && (keys.SamePublicKey(cert.PublicKey, first.PublicKey) || cert.SerialNumber.Cmp(first.SerialNumber) == 0):
				t.Error("the new certificate is for the revoked certificate's key, or is the revoked one")
			}
		})
	}
}
