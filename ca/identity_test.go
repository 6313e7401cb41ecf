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
	requests int
	renewals []error
}

// options returns the options of a student identity in dir against s, with
// the callbacks recorded in calls.
func (s *serverCA) options(t *testing.T, dir string, calls *identityCalls) IdentityOptions {
	return IdentityOptions{
		Dir: dir, Name: testSID, Profile: wire.ProfileStudent,
		Client: s.client, KeyAlgorithm: "ecdsa-p256",
		OnRenew: func(reason error) { calls.renewals = append(calls.renewals, reason) },
		OnRequest: func() {
			calls.requests++
			// Item 8 of the architecture issue: step 1 is logged when the key
			// exists, not before.
			if _, err := keys.ReadPrivateKey(filepath.Join(dir, KeyFile), nil); err != nil {
				t.Errorf("OnRequest before the key exists: %v", err)
			}
		},
	}
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
	if first.Reused || first.Enrollment == nil || !first.Enrollment.FirstUse || calls.requests != 1 || len(calls.renewals) != 0 {
		t.Fatalf("first call: reused %v, enrollment %v, %d requests, renewals %v; want an enrollment on first use, one request",
			first.Reused, first.Enrollment, calls.requests, calls.renewals)
	}
	if !keys.SamePublicKey(first.Key.Public(), first.Certificate.PublicKey) || !first.Root.Equal(s.Root()) {
		t.Error("the identity's key, certificate and root do not belong together")
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v, %v; want mode 0600", fi, err)
	}

	again, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Reused || again.Enrollment != nil || calls.requests != 1 || len(calls.renewals) != 0 {
		t.Fatalf("second call: reused %v, %d requests, renewals %v; want the saved certificate reused", again.Reused, calls.requests, calls.renewals)
	}
	if !again.Certificate.Equal(first.Certificate) || !keys.SamePublicKey(again.Key.Public(), first.Key.Public()) || !again.Root.Equal(first.Root) {
		t.Error("the reused identity is not the saved one")
	}

	// The board's way: the root is given; the saved one is not consulted.
	o.Root, o.RootFingerprint = s.Root(), nil
	if err := os.Remove(filepath.Join(dir, RootFile)); err != nil {
		t.Fatal(err)
	}
	if id, err := ReuseOrEnroll(t.Context(), o); err != nil || !id.Reused {
		t.Errorf("with the root given: got %v, %v; want the certificate reused", id, err)
	}
}

// TestReuseOrEnrollRenews replaces a saved certificate that no longer serves,
// telling OnRenew why, and keeps the key beside it.
func TestReuseOrEnrollRenews(t *testing.T) {
	s := newServerCA(t, nil)
	tests := []struct {
		name   string
		change func(t *testing.T, o *IdentityOptions)
		reason string // "" when nothing is said
	}{
		{"expires within the hour", func(t *testing.T, o *IdentityOptions) {
			o.Now = func() time.Time { return time.Now().Add(s.opts.CertValidity - 30*time.Minute) }
		}, "the certificate expires at"},
		{"expired", func(t *testing.T, o *IdentityOptions) {
			o.Now = func() time.Time { return time.Now().Add(s.opts.CertValidity + time.Hour) }
		}, "the certificate does not verify"},
		{"another name", func(t *testing.T, o *IdentityOptions) { o.Name = "1155000002" }, `the certificate is for "1155000001", not "1155000002"`},
		{"a certificate for another key", func(t *testing.T, o *IdentityOptions) {
			saveCertificate(t, o.Dir, s.mustEnroll(t, testSID, "").Certificate)
		}, "the certificate is not for the key beside it"},
		{"a root that is not the pinned one", func(t *testing.T, o *IdentityOptions) {
			saveRoot(t, o.Dir, RootFile, testRoot(t, "Other"))
			o.RootFingerprint = fingerprint(s.Root())
		}, ""},
		{"no certificate", func(t *testing.T, o *IdentityOptions) {
			if err := os.Remove(filepath.Join(o.Dir, CertFile)); err != nil {
				t.Fatal(err)
			}
		}, ""},
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
			if id.Reused || calls.requests != 2 {
				t.Fatalf("reused %v after %d requests; want a new enrollment", id.Reused, calls.requests)
			}
			switch {
			case tt.reason == "" && len(calls.renewals) != 0:
				t.Errorf("OnRenew told %v, want nothing", calls.renewals)
			case tt.reason != "" && (len(calls.renewals) != 1 || !strings.Contains(calls.renewals[0].Error(), tt.reason)):
				t.Errorf("OnRenew told %v, want one reason containing %q", calls.renewals, tt.reason)
			}
			if !keys.SamePublicKey(id.Key.Public(), first.Key.Public()) || !keys.SamePublicKey(id.Certificate.PublicKey, first.Key.Public()) {
				t.Error("the new certificate is not for the key saved before")
			}
		})
	}
}

// saveCertificate replaces cert.pem in dir.
func saveCertificate(t *testing.T, dir string, cert *x509.Certificate) {
	t.Helper()
	if err := durable.WriteFile(filepath.Join(dir, CertFile), keys.EncodeCertificatePEM(cert.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReuseOrEnrollToken asks for the token only when it enrolls, and makes
// no key when there is no token to enroll with.
func TestReuseOrEnrollToken(t *testing.T) {
	s := newServerCA(t, nil)
	dir := filepath.Join(t.TempDir(), "board")
	var calls identityCalls
	o := s.options(t, dir, &calls)
	o.Name, o.Profile, o.Root = testBoard, wire.ProfileBoard, s.Root()
	noToken := errors.New("no token file")
	o.Token = func() (string, error) { return "", noToken }
	if _, err := ReuseOrEnroll(t.Context(), o); !errors.Is(err, noToken) {
		t.Fatalf("got %v, want the token's error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); !os.IsNotExist(err) || calls.requests != 0 {
		t.Errorf("a key was made (%v) or a request sent (%d) without a token", err, calls.requests)
	}

	asked := 0
	o.Token = func() (string, error) { asked++; return s.boardSecret(t), nil }
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
		{"expires within the hour", false, testSID, x509.ExtKeyUsageClientAuth, root, now.Add(90 * time.Minute), "expires at"},
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
