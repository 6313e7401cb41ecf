package ca

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// TestOpenSSL has the real openssl check what the CA makes: certificates
// (made from openssl's own CSRs) verify against root.pem for their purpose,
// read as they should, and the CRL verifies and lists a revocation, which
// then makes the certificate fail verification.
func TestOpenSSL(t *testing.T) {
	bin := openssl(t)
	// Real time: openssl checks validity against the system clock.
	c := &clock{t: time.Now().UTC()}
	o := testOptions(t, c)
	tc := open(t, o, c)
	rootPath := filepath.Join(tc.opts.Dir, RootCertFile)
	dir := t.TempDir()

	tests := []struct {
		name    string
		profile uint8
		sid     string
		csr     string
		purpose string // openssl verify -purpose
		eku     string // as openssl x509 -text prints it
		ku      string
	}{
		{"student RSA", wire.ProfileStudent, testSID, "rsa2048.csr", "sslclient", "TLS Web Client Authentication", "Digital Signature, Key Encipherment"},
		{"student P-256", wire.ProfileStudent, testSID, "p256.csr", "sslclient", "TLS Web Client Authentication", "Digital Signature, Key Agreement"},
		{"student asking for a CA", wire.ProfileStudent, testSID, "ca-request.csr", "sslclient", "TLS Web Client Authentication", "Digital Signature, Key Agreement"},
		{"board", wire.ProfileBoard, testBoard, "board.csr", "sslserver", "TLS Web Server Authentication", "Digital Signature"},
	}
	var revoke *Issued
	var revokePath string
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := ""
			if tt.profile == wire.ProfileBoard {
				token = tc.boardToken(t)
			}
			iss, err := tc.Enroll(t.Context(), tc.req(t, tt.profile, tt.sid, fixtureCSR(t, tt.csr), token))
			if err != nil {
				t.Fatal(err)
			}
			certPath := writeFile(t, dir, fmt.Sprintf("cert%d.pem", i), keys.EncodeCertificatePEM(iss.Certificate.Raw))
			out, _, err := runOpenSSL(bin, "verify", "-CAfile", rootPath, "-purpose", tt.purpose, certPath)
			if err != nil {
				t.Fatal(err)
			}
			if want := certPath + ": OK"; strings.TrimSpace(out) != want {
				t.Errorf("openssl verify printed %q want %q", out, want)
			}
			text, _, err := runOpenSSL(bin, "x509", "-in", certPath, "-noout", "-text")
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"Subject: CN = " + tt.sid + "\n",
				"CA:FALSE",
				"X509v3 Basic Constraints: critical",
				"X509v3 Key Usage: critical\n                " + tt.ku + "\n",
				"X509v3 Extended Key Usage: \n                " + tt.eku + "\n",
				"X509v3 Subject Key Identifier",
				"X509v3 Authority Key Identifier",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("openssl x509 -text lacks %q:\n%s", want, text)
				}
			}
			for _, unwanted := range []string{"CA:TRUE", "Certificate Sign", "Code Signing", "evil.example", "Subject Alternative Name"} {
				if strings.Contains(text, unwanted) {
					t.Errorf("openssl x509 -text shows %q, which the CSR asked for and the CA must ignore", unwanted)
				}
			}
			if tt.csr == "p256.csr" {
				revoke, revokePath = iss, certPath
			}
		})
	}
	if revoke == nil {
		t.Fatal("no certificate to revoke")
	}

	t.Run("CRL", func(t *testing.T) {
		if _, err := tc.Revoke(t.Context(), revoke.Certificate.SerialNumber, ReasonKeyCompromise); err != nil {
			t.Fatal(err)
		}
		crlPath := filepath.Join(tc.opts.Dir, CRLFile)
		_, stderr, err := runOpenSSL(bin, "crl", "-in", crlPath, "-CAfile", rootPath, "-noout")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "verify OK") {
			t.Errorf("openssl crl printed %q, want verify OK", stderr)
		}
		text, _, err := runOpenSSL(bin, "crl", "-in", crlPath, "-noout", "-text")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"Serial Number: " + strings.ToUpper(keys.SerialHex(revoke.Certificate.SerialNumber)) + "\n", // openssl prints uppercase
			"X509v3 CRL Reason Code: \n                Key Compromise",
			"X509v3 CRL Number",
			"X509v3 Authority Key Identifier",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("openssl crl -text lacks %q:\n%s", want, text)
			}
		}
		out, _, err := runOpenSSL(bin, "verify", "-crl_check", "-CRLfile", crlPath, "-CAfile", rootPath, revokePath)
		if err == nil || !strings.Contains(out+err.Error(), "certificate revoked") {
			t.Errorf("openssl verify -crl_check of the revoked certificate: %q, %v; want certificate revoked", out, err)
		}
	})
}
