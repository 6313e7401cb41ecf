package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// identityCalls records the callbacks of ReuseOrEnroll.
type identityCalls struct {
	requests     int
	renewals     []error
	renewFailure []error
}

// options returns the options of a student identity in dir against s, with
// the callbacks recorded in calls.
func (s *serverCA) options(t *testing.T, dir string, calls *identityCalls) IdentityOptions {
	return IdentityOptions{
		Dir: dir, Name: testSID, Profile: wire.ProfileStudent, Root: s.Root(),
		Client: s.client, KeyAlgorithm: "ecdsa-p256",
		OnRenew:       func(reason error) { calls.renewals = append(calls.renewals, reason) },
		OnRenewFailed: func(err error) { calls.renewFailure = append(calls.renewFailure, err) },
		OnRequest: func() {
			calls.requests++
			// The key to certify is saved before the request is sent.
			_, err1 := keys.ReadPrivateKey(filepath.Join(dir, KeyFile), nil)
			_, err2 := keys.ReadPrivateKey(filepath.Join(dir, NextKeyFile), nil)
			if err1 != nil && err2 != nil {
				t.Errorf("OnRequest before the key exists: %v", err1)
			}
		},
	}
}

// lifeAt returns a clock two thirds (and a minute) into the life of a
// certificate the CA issues now, or past its end.
func (s *serverCA) lifeAt(frac float64) func() time.Time {
	d := time.Duration(float64(s.opts.CertValidity) * frac)
	return func() time.Time { return time.Now().Add(d) }
}

// TestReuseOrEnroll enrolls once, then reuses what it saved.
func TestReuseOrEnroll(t *testing.T) {
	s := newServerCA(t, nil)
	dir := filepath.Join(t.TempDir(), testSID)
	var calls identityCalls
	o := s.options(t, dir, &calls)

	first, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if first.Reused || first.Renewed || calls.requests != 1 || len(calls.renewals) != 0 {
		t.Fatalf("first call: reused %v, renewed %v, %d requests, renewals %v; want one enrollment",
			first.Reused, first.Renewed, calls.requests, calls.renewals)
	}
	if !keys.SamePublicKey(first.Key.Public(), first.Certificate.PublicKey) || !first.Root.Equal(s.Root()) {
		t.Error("the identity's key, certificate and root do not belong together")
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v, %v; want mode 0600", fi, err)
	}
	if root, err := keys.ReadCertificate(filepath.Join(dir, RootFile)); err != nil || !root.Equal(s.Root()) {
		t.Errorf("root.pem beside the certificate: %v", err)
	}

	again, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Reused || calls.requests != 1 || len(calls.renewals) != 0 {
		t.Fatalf("second call: reused %v, %d requests, renewals %v; want the saved certificate reused", again.Reused, calls.requests, calls.renewals)
	}
	if !again.Certificate.Equal(first.Certificate) || !keys.SamePublicKey(again.Key.Public(), first.Key.Public()) {
		t.Error("the reused identity is not the saved one")
	}
	// Just before two thirds of its life it is still reused.
	o.Now = s.lifeAt(0.66)
	if id, err := ReuseOrEnroll(t.Context(), o); err != nil || !id.Reused {
		t.Errorf("at 66%% of its life: got %v, %v; want the certificate reused", id, err)
	}
}

// TestReuseOrEnrollRenews renews a certificate two thirds into its life by
// its key, for a new key, without a token: the old certificate is revoked as
// superseded at the CA, next-key.pem becomes key.pem.
func TestReuseOrEnrollRenews(t *testing.T) {
	s := newServerCA(t, func(*Server) {})
	s.Authority.o.Policy = PolicyToken // renewals need no token
	dir := filepath.Join(t.TempDir(), testSID)
	var calls identityCalls
	o := s.options(t, dir, &calls)
	o.Token = func() (string, error) { return s.token(t, testSID), nil }
	first, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	o.Token = func() (string, error) { t.Error("a renewal asked for a token"); return "", nil }
	o.Now = s.lifeAt(0.67)
	id, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Renewed || id.Reused || calls.requests != 2 || len(calls.renewals) != 1 || !strings.Contains(calls.renewals[0].Error(), "two thirds") {
		t.Fatalf("renewed %v, reused %v, %d requests, renewals %v; want one renewal", id.Renewed, id.Reused, calls.requests, calls.renewals)
	}
	if keys.SamePublicKey(id.Key.Public(), first.Key.Public()) || !keys.SamePublicKey(id.Certificate.PublicKey, id.Key.Public()) {
		t.Error("the renewal did not certify a new key")
	}
	key, err := keys.ReadPrivateKey(filepath.Join(dir, KeyFile), nil)
	if err != nil || !keys.SamePublicKey(key.Public(), id.Key.Public()) {
		t.Errorf("key.pem is not the new key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, NextKeyFile)); !os.IsNotExist(err) {
		t.Errorf("next-key.pem is left: %v", err)
	}
	old, _, err := s.Certificate(first.Certificate.SerialNumber)
	if err != nil || old.Status != StatusRevoked || old.Reason != ReasonSuperseded || old.SupersededBy.Cmp(id.Certificate.SerialNumber) != 0 {
		t.Errorf("the renewed certificate: %+v, %v; want revoked, superseded by %s", old, err, keys.SerialHex(id.Certificate.SerialNumber))
	}
	// The renewed one is reused afterwards (its own life starts now).
	o.Now = nil
	if again, err := ReuseOrEnroll(t.Context(), o); err != nil || !again.Reused || !again.Certificate.Equal(id.Certificate) {
		t.Errorf("after the renewal: %v, %v; want the new certificate reused", again, err)
	}
}

// TestReuseOrEnrollKeepsCertificateWhenCAIsAway: a renewal that cannot reach
// the CA leaves the valid certificate in use, and says why.
func TestReuseOrEnrollKeepsCertificateWhenCAIsAway(t *testing.T) {
	s := newServerCA(t, nil)
	dir := filepath.Join(t.TempDir(), testSID)
	var calls identityCalls
	o := s.options(t, dir, &calls)
	first, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	o.Now = s.lifeAt(0.8)
	o.Client = Client{Addr: "127.0.0.1:1"} // nothing listens there
	id, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Reused || !id.Certificate.Equal(first.Certificate) || len(calls.renewFailure) != 1 {
		t.Errorf("reused %v, failures %v; want the valid certificate reused and the failure told", id.Reused, calls.renewFailure)
	}
	// The next attempt renews with the key it saved for the first one.
	next, err := keys.ReadPrivateKey(filepath.Join(dir, NextKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Client = s.client
	id, err = ReuseOrEnroll(t.Context(), o)
	if err != nil || !id.Renewed || !keys.SamePublicKey(id.Certificate.PublicKey, next.Public()) {
		t.Errorf("the renewal after the CA came back: %v, %v; want the key of next-key.pem certified", id, err)
	}
}

// TestReuseOrEnrollEnrollsAgain replaces a saved certificate that neither
// serves nor can renew by a new enrollment, telling OnRenew why: a new key
// when the old one had its certificate, the waiting key otherwise.
func TestReuseOrEnrollEnrollsAgain(t *testing.T) {
	s := newServerCA(t, nil)
	tests := []struct {
		name    string
		change  func(t *testing.T, o *IdentityOptions)
		reason  string // "" when nothing is said
		sameKey bool   // the new certificate is for the key saved before
	}{
		{"expired", func(t *testing.T, o *IdentityOptions) { o.Now = s.lifeAt(1.01) }, "the certificate expired at", false},
		{"revoked, in the renewal window", func(t *testing.T, o *IdentityOptions) {
			cert, err := keys.ReadCertificate(filepath.Join(o.Dir, CertFile))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Revoke(t.Context(), cert.SerialNumber, ReasonKeyCompromise); err != nil {
				t.Fatal(err)
			}
			o.Now = s.lifeAt(0.9)
		}, "cannot renew", false},
		{"another name", func(t *testing.T, o *IdentityOptions) { o.Name = "1155000002" }, `the certificate is for "1155000001", not "1155000002"`, false},
		{"a certificate for another key", func(t *testing.T, o *IdentityOptions) {
			saveCertificate(t, o.Dir, s.mustEnroll(t, testSID, "").Certificate)
		}, "the certificate is not for the key beside it", true},
		{"no certificate", func(t *testing.T, o *IdentityOptions) {
			if err := os.Remove(filepath.Join(o.Dir, CertFile)); err != nil {
				t.Fatal(err)
			}
		}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), testSID)
			var calls identityCalls
			o := s.options(t, dir, &calls)
			first, err := ReuseOrEnroll(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(t, &o)
			id, err := ReuseOrEnroll(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			if id.Reused || id.Renewed {
				t.Fatalf("reused %v, renewed %v; want a new enrollment", id.Reused, id.Renewed)
			}
			switch {
			case tt.reason == "" && len(calls.renewals) != 0:
				t.Errorf("OnRenew told %v, want nothing", calls.renewals)
			case tt.reason != "" && (len(calls.renewals) == 0 || !strings.Contains(calls.renewals[len(calls.renewals)-1].Error(), tt.reason)):
				t.Errorf("OnRenew told %v, want a reason containing %q", calls.renewals, tt.reason)
			}
			if got := keys.SamePublicKey(id.Certificate.PublicKey, first.Key.Public()); got != tt.sameKey {
				t.Errorf("the new certificate is for the key saved before: %v, want %v", got, tt.sameKey)
			}
			if !keys.SamePublicKey(id.Certificate.PublicKey, id.Key.Public()) {
				t.Error("the identity's key is not its certificate's")
			}
		})
	}
}

// TestReuseOrEnrollExpiredNeedsToken: under policy "token" a student whose
// certificate expired is told she needs a new token.
func TestReuseOrEnrollExpiredNeedsToken(t *testing.T) {
	s := newServerCA(t, nil)
	s.Authority.o.Policy = PolicyToken
	dir := filepath.Join(t.TempDir(), testSID)
	var calls identityCalls
	o := s.options(t, dir, &calls)
	o.Token = func() (string, error) { return s.token(t, testSID), nil }
	if _, err := ReuseOrEnroll(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	o.Token, o.Now = nil, s.lifeAt(1.5)
	_, err := ReuseOrEnroll(t.Context(), o)
	var cr *CannotRenewError
	if !errors.As(err, &cr) || wire.CodeOf(err) != wire.CodeTokenRequired || !strings.Contains(err.Error(), "needs a new enrollment token") || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("got %v, want a CannotRenewError saying a new token is needed", err)
	}
}

// saveCertificate replaces cert.pem in dir.
func saveCertificate(t *testing.T, dir string, cert *x509.Certificate) {
	t.Helper()
	if err := durable.WriteFile(filepath.Join(dir, CertFile), keys.EncodeCertificatePEM(cert.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReuseOrEnrollToken asks for the token only when it enrolls, and sends
// nothing when the token cannot be had.
func TestReuseOrEnrollToken(t *testing.T) {
	s := newServerCA(t, nil)
	dir := filepath.Join(t.TempDir(), "board")
	var calls identityCalls
	o := s.options(t, dir, &calls)
	o.Name, o.Profile = testBoard, wire.ProfileBoard
	noToken := errors.New("no token file")
	o.Token = func() (string, error) { return "", noToken }
	if _, err := ReuseOrEnroll(t.Context(), o); !errors.Is(err, noToken) {
		t.Fatalf("got %v, want the token's error", err)
	}
	if calls.requests != 0 {
		t.Errorf("a request was sent (%d) without a token", calls.requests)
	}
	o.Token = func() (string, error) { return "pkbb_" + strings.Repeat("A", 43), nil }
	if _, err := ReuseOrEnroll(t.Context(), o); !errors.Is(err, ErrOldBoardSecret) {
		t.Fatalf("a version 1 board secret: got %v, want ErrOldBoardSecret", err)
	}

	asked := 0
	token := s.boardToken(t)
	o.Token = func() (string, error) { asked++; return token, nil }
	for range 2 {
		if _, err := ReuseOrEnroll(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	if asked != 1 {
		t.Errorf("the token was asked for %d times for one enrollment", asked)
	}
}

// TestReuseOrEnrollRetries runs every attempt through Retry, with one key.
func TestReuseOrEnrollRetries(t *testing.T) {
	s := newServerCA(t, nil)
	dir := filepath.Join(t.TempDir(), testSID)
	var calls identityCalls
	o := s.options(t, dir, &calls)
	busy := &wire.Error{Code: wire.CodeBusy, Text: "try again shortly"}
	attempts := 0
	o.Retry = func(attempt func() error) error {
		for {
			attempts++
			if err := attempt(); err != nil || attempts == 3 {
				return err
			}
		}
	}
	id, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 3 || calls.requests != 1 {
		t.Errorf("%d attempts, OnRequest called %d times; want 3 and 1", attempts, calls.requests)
	}
	key, err := keys.ReadPrivateKey(filepath.Join(dir, KeyFile), nil)
	if err != nil || !keys.SamePublicKey(key.Public(), id.Certificate.PublicKey) {
		t.Errorf("the last certificate is not for key.pem: %v", err)
	}
	o.Retry = func(attempt func() error) error { return busy }
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReuseOrEnroll(t.Context(), o); !errors.Is(err, busy) {
		t.Errorf("got %v, want Retry's error", err)
	}
}

// TestUsable checks each reason a saved certificate does not serve.
func TestUsable(t *testing.T) {
	rootKey, key, other := testcert.Key(t), testcert.Key(t), testcert.Key(t)
	root := testcert.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, rootKey.Public(), rootKey)
	now := time.Now()
	cert := testcert.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: testSID}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, root, key.Public(), rootKey)
	tests := []struct {
		name     string
		otherKey bool // the key beside the certificate is not its own
		sid      string
		usage    x509.ExtKeyUsage
		root     *x509.Certificate
		now      time.Time
		wantErr  string
	}{
		{"serves", false, testSID, x509.ExtKeyUsageClientAuth, root, now, ""},
		{"another name", false, "1155000002", x509.ExtKeyUsageClientAuth, root, now, `is for "1155000001", not "1155000002"`},
		{"another usage", false, testSID, x509.ExtKeyUsageServerAuth, root, now, "does not verify"},
		{"another root", false, testSID, x509.ExtKeyUsageClientAuth, testRoot(t, "Other"), now, "does not verify"},
		{"expired", false, testSID, x509.ExtKeyUsageClientAuth, root, now.Add(3 * time.Hour), "expired at"},
		{"another key", true, testSID, x509.ExtKeyUsageClientAuth, root, now, "not for the key beside it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := key
			if tt.otherKey {
				k = other
			}
			err := usable(cert, k, tt.root, tt.sid, tt.usage, tt.now)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}
