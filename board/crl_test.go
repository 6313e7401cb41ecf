package board

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// crlPKI is a root that signs CRLs, and a student certificate it issued.
type crlPKI struct {
	root    *x509.Certificate
	rootKey crypto.Signer
	student *x509.Certificate
}

func newCRLPKI(t *testing.T) *crlPKI {
	t.Helper()
	k := testcert.Key(t)
	root := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "CRL Test Root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, k.Public(), k)
	sk := testcert.Key(t)
	student := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "1155000001"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, root, sk.Public(), k)
	return &crlPKI{root: root, rootKey: k, student: student}
}

// crl returns a CRL numbered n, valid from thisUpdate to nextUpdate, that
// revokes the given serials, as PEM.
func (p *crlPKI) crl(t *testing.T, n int64, thisUpdate, nextUpdate time.Time, revoked ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})
	}
	der, err := x509.CreateRevocationList(nil, &x509.RevocationList{
		Number: big.NewInt(n), ThisUpdate: thisUpdate, NextUpdate: nextUpdate, RevokedCertificateEntries: entries,
	}, p.root, p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return keys.EncodeCRLPEM(der)
}

// fakeCA serves crl.pem, whatever it is set to, as the CA does (PROTOCOL.md
// §4, Fetch).
type fakeCA struct {
	ln net.Listener
	mu sync.Mutex
	pm []byte
}

func startFakeCA(t *testing.T) *fakeCA {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca := &fakeCA{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go ca.serve(c)
		}
	}()
	return ca
}

func (ca *fakeCA) set(pem []byte) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.pm = pem
}

func (ca *fakeCA) serve(c net.Conn) {
	wc := wire.NewConn(c, wire.Options{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	defer wc.Close()
	if _, err := wire.Expect[*wire.Fetch](wc.ReadMessage()); err != nil {
		return
	}
	ca.mu.Lock()
	data := ca.pm
	ca.mu.Unlock()
	wire.SendFile(wc, "crl.pem", bytes.NewReader(data), int64(len(data)), sha256.Sum256(data), wire.SendOptions{}) //nolint:errcheck // the keeper reports it
}

// TestCRLCheck checks the keeper's answer for a session's certificate: with a
// current CRL, revoked or not; without one, refused or let through with a
// warning as board.crl_stale says.
func TestCRLCheck(t *testing.T) {
	p := newCRLPKI(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	current := p.crl(t, 2, now.Add(-time.Hour), now.Add(time.Hour))
	revoking := p.crl(t, 3, now.Add(-time.Hour), now.Add(time.Hour), p.student.SerialNumber)
	expired := p.crl(t, 1, now.Add(-2*time.Hour), now.Add(-time.Hour))
	tests := []struct {
		name        string
		crl         []byte // nil: none held
		acceptStale bool
		code        wire.Code // 0: accepted
		text        string    // a part of the refusal's text
		warning     string    // a part of the warning logged, if any
	}{
		{"current, not revoked", current, false, 0, "", ""},
		{"current, revoked", revoking, false, wire.CodeCertRevoked, "was revoked on 2026-03-01T00:00:00Z", ""},
		{"none held, fail", nil, false, wire.CodeCRLUnavailable, "holds no revocation list", `session refused: no current CRL (board.crl_stale = "fail")`},
		{"none held, warn", nil, true, 0, "", `accepting a session without a current CRL (board.crl_stale = "warn")`},
		{"expired, fail", expired, false, wire.CodeCRLUnavailable, "expired at 2026-06-01T11:00:00Z", "session refused: no current CRL"},
		{"expired, warn", expired, true, 0, "", "accepting a session without a current CRL"},
		{"revoked on an expired CRL, warn", p.crl(t, 4, now.Add(-2*time.Hour), now.Add(-time.Hour), p.student.SerialNumber), true,
			wire.CodeCertRevoked, "was revoked", "accepting a session without a current CRL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			path := filepath.Join(t.TempDir(), "crl.pem")
			if tt.crl != nil {
				if err := os.WriteFile(path, tt.crl, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			k := NewCRLKeeper(CRLOptions{Path: path, Root: p.root, AcceptStale: tt.acceptStale, Log: zap.New(core),
				Now: func() time.Time { return now }})
			if err := k.Load(); err != nil {
				t.Fatal(err)
			}
			err := k.Check(p.student)
			var refusal *wire.Refusal
			switch {
			case tt.code == 0 && err != nil:
				t.Errorf("got %v, want the session accepted", err)
			case tt.code != 0 && (!errors.As(err, &refusal) || refusal.Code != tt.code || !strings.Contains(refusal.Text, tt.text)):
				t.Errorf("got %v, want a %v refusal saying %q", err, tt.code, tt.text)
			}
			warned := logs.FilterLevelExact(zapcore.WarnLevel)
			if tt.warning == "" && warned.Len() != 0 || tt.warning != "" && warned.FilterMessageSnippet(tt.warning).Len() != 1 {
				t.Errorf("warnings: got %v, want %q", warned.All(), tt.warning)
			}
		})
	}
}

// TestCRLFetchKeepsTheNewest checks that Fetch installs and saves the CA's
// CRL, never replaces it with an older one, and that Load installs the saved
// one in the next run.
func TestCRLFetchKeepsTheNewest(t *testing.T) {
	p := newCRLPKI(t)
	ca := startFakeCA(t)
	now := time.Now()
	path := filepath.Join(t.TempDir(), "crl.pem")
	core, logs := observer.New(zapcore.InfoLevel)
	k := NewCRLKeeper(CRLOptions{CAAddr: ca.ln.Addr().String(), Path: path, Root: p.root, Log: zap.New(core)})
	ctx := context.Background()

	if err := k.Check(p.student); err == nil {
		t.Error("a keeper holding no CRL accepted a session")
	}
	second := p.crl(t, 2, now.Add(-time.Hour), now.Add(time.Hour), p.student.SerialNumber)
	ca.set(second)
	if err := k.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if saved, err := os.ReadFile(path); err != nil || !bytes.Equal(saved, second) {
		t.Errorf("after Fetch, %s holds %d bytes (%v), want the CRL fetched", path, len(saved), err)
	}
	if logs.FilterMessage("CRL installed").FilterField(zap.String("number", "2")).Len() != 1 {
		t.Errorf("no \"CRL installed\" line for number 2: %v", logs.All())
	}
	var refusal *wire.Refusal
	if err := k.Check(p.student); !errors.As(err, &refusal) || refusal.Code != wire.CodeCertRevoked {
		t.Errorf("got %v, want cert-revoked from the fetched CRL", err)
	}

	ca.set(p.crl(t, 1, now.Add(-time.Hour), now.Add(time.Hour))) // older, revoking nothing
	if err := k.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "older than the 2 held") {
		t.Errorf("Fetch of an older CRL: got %v, want it refused", err)
	}
	if err := k.Check(p.student); !errors.As(err, &refusal) || refusal.Code != wire.CodeCertRevoked {
		t.Errorf("after an older CRL: got %v, want cert-revoked still", err)
	}
	if saved, _ := os.ReadFile(path); !bytes.Equal(saved, second) {
		t.Error("an older CRL replaced the saved one")
	}

	ca.set(second) // the same again: nothing to do
	if err := k.Fetch(ctx); err != nil {
		t.Errorf("Fetch of the CRL held: %v", err)
	}
	if n := logs.FilterMessage("CRL installed").Len(); n != 1 {
		t.Errorf("%d \"CRL installed\" lines, want 1", n)
	}

	other := newCRLPKI(t) // a CRL not signed by the root
	ca.set(other.crl(t, 9, now.Add(-time.Hour), now.Add(time.Hour)))
	if err := k.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "not signed by the root") {
		t.Errorf("Fetch of another root's CRL: got %v", err)
	}

	next := NewCRLKeeper(CRLOptions{Path: path, Root: p.root})
	if err := next.Load(); err != nil {
		t.Fatal(err)
	}
	if err := next.Check(p.student); !errors.As(err, &refusal) || refusal.Code != wire.CodeCertRevoked {
		t.Errorf("after Load: got %v, want cert-revoked from the saved CRL", err)
	}
	if err := os.WriteFile(path, []byte("not a CRL"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := NewCRLKeeper(CRLOptions{Path: path, Root: p.root}).Load(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load of a broken file: got %v, want an error naming %s", err, path)
	}
}

// TestCRLRunRefreshes checks that Run fetches every Refresh, logs a failed
// refresh and keeps the CRL held, and returns when its context ends.
func TestCRLRunRefreshes(t *testing.T) {
	p := newCRLPKI(t)
	ca := startFakeCA(t)
	now := time.Now()
	core, logs := observer.New(zapcore.InfoLevel)
	k := NewCRLKeeper(CRLOptions{CAAddr: ca.ln.Addr().String(), Path: filepath.Join(t.TempDir(), "crl.pem"), Root: p.root,
		Refresh: 10 * time.Millisecond, Log: zap.New(core)})
	ca.set([]byte("garbage"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.Run(ctx)
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("Run: %s did not happen; logged %v", what, logs.All())
			}
		}
	}
	waitFor("a failed refresh", func() bool { return logs.FilterMessage("CRL refresh failed; keeping the one held").Len() > 0 })
	ca.set(p.crl(t, 5, now.Add(-time.Hour), now.Add(time.Hour)))
	waitFor("an installed CRL", func() bool { return k.Check(p.student) == nil })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestCRLCheckFresh is the board's readiness check of its CRL: failing with
// none held and once the CRL's nextUpdate passes on the injected clock, ready
// again once a newer CRL is offered (a refresh).
func TestCRLCheckFresh(t *testing.T) {
	p := newCRLPKI(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	k := NewCRLKeeper(CRLOptions{Path: filepath.Join(t.TempDir(), "crl.pem"), Root: p.root, Now: func() time.Time { return clock }})
	if err := k.CheckFresh(); err == nil || !strings.Contains(err.Error(), "holds no CRL") {
		t.Errorf("none held: got %v", err)
	}
	first, _ := pem.Decode(p.crl(t, 2, now.Add(-time.Hour), now.Add(time.Hour)))
	crl, err := x509.ParseRevocationList(first.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Offer(crl); err != nil {
		t.Fatal(err)
	}
	if err := k.CheckFresh(); err != nil {
		t.Errorf("current CRL: %v", err)
	}
	clock = now.Add(time.Hour + time.Second)
	if err := k.CheckFresh(); err == nil || !strings.Contains(err.Error(), "expired at 2026-06-01T13:00:00Z") {
		t.Errorf("past nextUpdate: got %v, want stale", err)
	}
	next, _ := pem.Decode(p.crl(t, 3, clock, clock.Add(time.Hour)))
	crl, err = x509.ParseRevocationList(next.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Offer(crl); err != nil {
		t.Fatal(err)
	}
	if err := k.CheckFresh(); err != nil {
		t.Errorf("after the refresh: %v", err)
	}
}
