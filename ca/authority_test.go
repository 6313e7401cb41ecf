package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidSKI              = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAKI              = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidReasonCode       = asn1.ObjectIdentifier{2, 5, 29, 21}
)

// extension returns cert's extension with id, or fails.
func extension(t *testing.T, cert *x509.Certificate, id asn1.ObjectIdentifier) pkix.Extension {
	t.Helper()
	for _, e := range cert.Extensions {
		if e.Id.Equal(id) {
			return e
		}
	}
	t.Fatalf("certificate has no extension %s", id)
	return pkix.Extension{}
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenCreatesRoot(t *testing.T) {
	tc := newCA(t, nil)
	for name, mode := range map[string]os.FileMode{
		RootKeyFile: 0o600, RootCertFile: 0o644, DBFile: 0o600, CRLFile: 0o644, BoardTokenFile: 0o600,
	} {
		if got := fileMode(t, filepath.Join(tc.opts.Dir, name)); got != mode {
			t.Errorf("%s: mode %o want %o", name, got, mode)
		}
	}
	root := tc.Root()
	onDisk, err := keys.ReadCertificate(filepath.Join(tc.opts.Dir, RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !onDisk.Equal(root) || !bytes.Equal(tc.RootPEM(), keys.EncodeCertificatePEM(root.Raw)) {
		t.Error("root.pem differs from Root()")
	}
	key, err := keys.ReadPrivateKey(filepath.Join(tc.opts.Dir, RootKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	ski, err := subjectKeyID(root.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"key matches", keys.SamePublicKey(key.Public(), root.PublicKey), true},
		{"subject", root.Subject.String(), "CN=CUHK Test Root CA,O=CUHK,C=HK"},
		{"self-signed issuer", root.Issuer.String(), root.Subject.String()},
		{"CA", root.IsCA && root.BasicConstraintsValid, true},
		{"pathlen", root.MaxPathLen, 0},
		{"pathlen zero", root.MaxPathLenZero, true},
		{"basicConstraints critical", extension(t, root, oidBasicConstraints).Critical, true},
		{"key usage", root.KeyUsage, x509.KeyUsageCertSign | x509.KeyUsageCRLSign},
		{"keyUsage critical", extension(t, root, oidKeyUsage).Critical, true},
		{"no EKU", len(root.ExtKeyUsage), 0},
		{"SKI", string(root.SubjectKeyId), string(ski)},
		{"AKI", string(root.AuthorityKeyId), string(ski)},
		{"serial positive", root.SerialNumber.Sign(), 1},
		{"serial fits 20 bytes", len(root.SerialNumber.Bytes()) <= 16, true},
		{"not before", root.NotBefore, t0.Add(-time.Minute)},
		{"not after", root.NotAfter, t0.Add(tc.opts.RootValidity)},
		{"signature", root.SignatureAlgorithm, x509.ECDSAWithSHA256},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v want %v", c.what, c.got, c.want)
		}
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if data, err := os.ReadFile(tc.BoardTokenPath()); err != nil || !regexp.MustCompile(`^pkbt_[A-Za-z0-9_-]{43}\n$`).Match(data) {
		t.Errorf("board token file %q (%v) does not hold a token", data, err)
	}
	// The facts the role's STEP 0 line reports (roles TestCALogsRootReady).
	if !tc.Created() || tc.KeyEncrypted() {
		t.Errorf("Created() = %v, KeyEncrypted() = %v; want true, false", tc.Created(), tc.KeyEncrypted())
	}
}

func TestReopenLoadsSameRoot(t *testing.T) {
	tc := newCA(t, nil)
	fp := keys.FingerprintHex(tc.Root())
	token, err := os.ReadFile(tc.BoardTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(tc.opts.Dir, RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tc = tc.reopen(t)
	if got := keys.FingerprintHex(tc.Root()); got != fp {
		t.Errorf("fingerprint after reopen: got %s want %s", got, fp)
	}
	if got, err := os.ReadFile(tc.BoardTokenPath()); err != nil || !bytes.Equal(got, token) {
		t.Error("the board token file changed on reopen")
	}
	again, err := os.ReadFile(filepath.Join(tc.opts.Dir, RootKeyFile))
	if err != nil || !bytes.Equal(again, keyPEM) {
		t.Error("root-key.pem changed on reopen")
	}
	if tc.Created() {
		t.Error("Created() after reopen: got true want false")
	}
}

// TestOpenRefusesBrokenRoot damages a CA's root in each way and checks that
// Open names the file and the remedy, and does not touch the files.
func TestOpenRefusesBrokenRoot(t *testing.T) {
	otherKey := func(t *testing.T) []byte {
		pemData, err := keys.MarshalPrivatePEM(newKey(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		return pemData
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, tc *testCA)
		want   []string // substrings of the error
	}{
		{
			name:   "key deleted",
			damage: func(t *testing.T, tc *testCA) { os.Remove(filepath.Join(tc.opts.Dir, RootKeyFile)) },
			want:   []string{RootKeyFile, "is missing", "will not regenerate"},
		},
		{
			name:   "certificate deleted",
			damage: func(t *testing.T, tc *testCA) { os.Remove(filepath.Join(tc.opts.Dir, RootCertFile)) },
			want:   []string{RootCertFile, "is missing", "will not regenerate"},
		},
		{
			name: "both deleted after issuing",
			damage: func(t *testing.T, tc *testCA) {
				os.Remove(filepath.Join(tc.opts.Dir, RootKeyFile))
				os.Remove(filepath.Join(tc.opts.Dir, RootCertFile))
			},
			want: []string{"holds 1 certificates", "will not make a new root"},
		},
		{
			name: "key of another pair",
			damage: func(t *testing.T, tc *testCA) {
				writeFile(t, tc.opts.Dir, RootKeyFile, otherKey(t))
			},
			want: []string{RootKeyFile, "does not belong to the root certificate"},
		},
		{
			name:   "key garbage",
			damage: func(t *testing.T, tc *testCA) { writeFile(t, tc.opts.Dir, RootKeyFile, []byte("garbage")) },
			want:   []string{RootKeyFile, "cannot be read", "will not regenerate"},
		},
		{
			name:   "certificate garbage",
			damage: func(t *testing.T, tc *testCA) { writeFile(t, tc.opts.Dir, RootCertFile, []byte("garbage")) },
			want:   []string{RootCertFile, "restore"},
		},
		{
			name: "certificate not a CA",
			damage: func(t *testing.T, tc *testCA) {
				tmpl := &x509.Certificate{
					SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not a CA"},
					NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
					KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
				}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, tc.key.Public(), tc.key)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, tc.opts.Dir, RootCertFile, keys.EncodeCertificatePEM(der))
			},
			want: []string{RootCertFile, "is not a CA certificate"},
		},
		{
			name:   "expired",
			damage: func(t *testing.T, tc *testCA) { tc.clock.Add(tc.opts.RootValidity + time.Hour) },
			want:   []string{RootCertFile, "expired at", "start a new CA"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newCA(t, nil)
			tc.mustEnroll(t, testSID, "")
			if err := tc.Close(); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, tc)
			before := dirSnapshot(t, tc.opts.Dir)
			_, err := Open(tc.opts)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if after := dirSnapshot(t, tc.opts.Dir); after != before {
				t.Errorf("Open changed the root files:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// dirSnapshot describes the root files in dir (names and SHA-256 of their
// contents), to check that a failed Open left them alone.
func dirSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, name := range []string{RootCertFile, RootKeyFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			fmt.Fprintf(&b, "%s: missing; ", name)
			continue
		}
		fmt.Fprintf(&b, "%s: %x; ", name, sha256.Sum256(data))
	}
	return b.String()
}

func TestEncryptedRootKey(t *testing.T) {
	pass := []byte("root passphrase 1155")
	tc := newCA(t, func(o *Options) { o.Passphrase = pass })
	keyPath := filepath.Join(tc.opts.Dir, RootKeyFile)
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "ENCRYPTED PRIVATE KEY" {
		t.Fatalf("root-key.pem is not encrypted PKCS#8")
	}
	if !tc.KeyEncrypted() {
		t.Error("KeyEncrypted() on first start: got false want true")
	}
	fp := keys.FingerprintHex(tc.Root())
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		pass    []byte
		wantErr string
	}{
		{"same passphrase", pass, ""},
		{"wrong passphrase", []byte("root passphrase 1156"), "the passphrase does not decrypt the root key"},
		{"no passphrase", nil, "is encrypted and no passphrase was given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tc.opts
			o.Passphrase = tt.pass
			a, err := Open(o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), keyPath) {
					t.Fatalf("got %v want an error naming %s and containing %q", err, keyPath, tt.wantErr)
				}
				if strings.Contains(err.Error(), string(pass)) || (tt.pass != nil && strings.Contains(err.Error(), string(tt.pass))) {
					t.Error("the error contains a passphrase")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if got := keys.FingerprintHex(a.Root()); got != fp {
				t.Errorf("fingerprint: got %s want %s", got, fp)
			}
			if !a.KeyEncrypted() || a.Created() {
				t.Errorf("KeyEncrypted() = %v, Created() = %v; want true, false", a.KeyEncrypted(), a.Created())
			}
		})
	}
}

func TestRootAlgorithms(t *testing.T) {
	tests := []struct {
		alg     string
		sigAlg  x509.SignatureAlgorithm
		keyDesc string
	}{
		{"ecdsa-p256", x509.ECDSAWithSHA256, "ECDSA P-256"},
		{"ecdsa-p384", x509.ECDSAWithSHA384, "ECDSA P-384"},
		{"rsa-2048", x509.SHA256WithRSA, "RSA-2048"},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			tc := newCA(t, func(o *Options) { o.KeyAlgorithm = tt.alg })
			root := tc.Root()
			if got := keys.Describe(root.PublicKey); got != tt.keyDesc {
				t.Errorf("root key: got %s want %s", got, tt.keyDesc)
			}
			if root.SignatureAlgorithm != tt.sigAlg {
				t.Errorf("root signature: got %s want %s", root.SignatureAlgorithm, tt.sigAlg)
			}
			iss := tc.mustEnroll(t, testSID, "")
			if iss.Certificate.SignatureAlgorithm != tt.sigAlg {
				t.Errorf("certificate signature: got %s want %s", iss.Certificate.SignatureAlgorithm, tt.sigAlg)
			}
			if err := iss.Certificate.CheckSignatureFrom(root); err != nil {
				t.Error(err)
			}
			// A later start with another key_algorithm keeps the root.
			tc.opts.KeyAlgorithm = "ecdsa-p384"
			if tt.alg == "ecdsa-p384" {
				tc.opts.KeyAlgorithm = "ecdsa-p256"
			}
			again := tc.reopen(t)
			if !again.Root().Equal(root) {
				t.Error("reopening with another key_algorithm changed the root")
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no dir", func(o *Options) { o.Dir = "" }, "Dir"},
		{"no common name", func(o *Options) { o.Subject = pkix.Name{} }, "Subject.CommonName"},
		{"no pattern", func(o *Options) { o.SIDPattern = nil }, "SIDPattern"},
		{"no board", func(o *Options) { o.BoardName = "" }, "BoardName"},
		{"long board", func(o *Options) { o.BoardName = strings.Repeat("b", wire.MaxSIDLen+1) }, "board name"},
		{"policy", func(o *Options) { o.Policy = "closed" }, `policy "closed"`},
		{"algorithm", func(o *Options) { o.KeyAlgorithm = "ed25519" }, `key algorithm "ed25519"`},
		{"negative", func(o *Options) { o.CRLValidity = -time.Hour }, "negative duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t, newClock())
			tt.mod(&o)
			if _, err := Open(o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestBoardToken: the first start writes a one-time board token, never
// again; it enrolls one board once; the board then renews without it.
func TestBoardToken(t *testing.T) {
	tc := newCA(t, nil)
	data, err := os.ReadFile(tc.BoardTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(data))
	key := newKey(t)
	iss, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileBoard, testBoard, makeCSR(t, key, testBoard), token))
	if err != nil {
		t.Fatal(err)
	}
	// One-time: a second board cannot use it.
	_, err = tc.Enroll(t.Context(), tc.req(t, wire.ProfileBoard, testBoard, makeCSR(t, newKey(t), testBoard), token))
	wantRefusal(t, err, wire.CodeTokenUsed)
	// The board renews by its certificate's key.
	if _, _, err := tc.renew(t, iss.Certificate, key); err != nil {
		t.Fatal(err)
	}
	// A later start writes no new token, even when the file is gone.
	if err := os.Remove(tc.BoardTokenPath()); err != nil {
		t.Fatal(err)
	}
	tc = tc.reopen(t)
	if _, err := os.Stat(tc.BoardTokenPath()); !os.IsNotExist(err) {
		t.Errorf("a later start wrote a board token file: %v", err)
	}
	// The token expires after TokenTTL.
	tc2 := newCA(t, nil)
	data, err = os.ReadFile(tc2.BoardTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	tc2.clock.Add(tc2.opts.TokenTTL)
	_, err = tc2.Enroll(t.Context(), tc2.req(t, wire.ProfileBoard, testBoard, makeCSR(t, newKey(t), testBoard), strings.TrimSpace(string(data))))
	wantRefusal(t, err, wire.CodeTokenExpired)
}

// TestOldBoardSecretRefused: a version 1 board secret ("pkbb_…") is not a
// token: the client refuses it with a sentence that says what to do.
func TestOldBoardSecretRefused(t *testing.T) {
	_, err := TokenKey("pkbb_" + strings.Repeat("A", 43) + "\n")
	if !errors.Is(err, ErrOldBoardSecret) || !strings.Contains(err.Error(), "pkiboard token --board") {
		t.Errorf("got %v, want ErrOldBoardSecret saying to make a board token", err)
	}
	for _, bad := range []string{"", "pkbt_", "pkbt_" + strings.Repeat("A", 42), "pkbt_" + strings.Repeat("A", 44), "pkbt_" + strings.Repeat("*", 43)} {
		if _, err := TokenKey(bad); err == nil || strings.Contains(err.Error(), bad[min(len(bad), 5):]) && len(bad) > 5 {
			t.Errorf("TokenKey(%q): got %v, want an error that does not repeat it", bad, err)
		}
	}
}

// TestOpenWithoutCreate is the regression test of finding 9: an operator
// command pointed at a directory with no CA made a new root. Open without
// Create refuses such a directory, names it, and creates nothing.
func TestOpenWithoutCreate(t *testing.T) {
	c := newClock()
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), t.TempDir()} {
		o := testOptions(t, c)
		o.Dir, o.Create = dir, false
		_, err := Open(o)
		if !errors.Is(err, ErrNoCA) || !containsAll(err.Error(), dir, "pkiboard --role=ca") {
			t.Errorf("Open of %s without Create: got %v, want ErrNoCA naming the directory and the command", dir, err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("Open without Create left %d files in %s", len(entries), dir)
		}
		if errors.Is(err, os.ErrNotExist) != (filepath.Base(dir) == "missing") {
			t.Errorf("Open without Create changed whether %s exists", dir)
		}
	}
	// The CA's first start creates it; then Open without Create opens it.
	o := testOptions(t, c)
	a, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	o.Create = false
	a, err = Open(o)
	if err != nil {
		t.Fatalf("Open without Create of an existing CA: %v", err)
	}
	a.Close()
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
