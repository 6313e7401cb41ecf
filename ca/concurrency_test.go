package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// TestConcurrentEnroll runs 32 enrollments at once: all succeed with unique
// serials, and group commit stores them in fewer transactions.
func TestConcurrentEnroll(t *testing.T) {
	tc := newCA(t, nil)
	const n = 32
	csrs := make([][]byte, n)
	for i := range csrs {
		csrs[i] = makeCSR(t, newKey(t), fmt.Sprintf("11550000%02d", i))
	}
	before := tc.db.Commits()
	issued := make([]*Issued, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			issued[i], errs[i] = tc.Enroll(context.Background(), tc.req(t, wire.ProfileStudent, fmt.Sprintf("11550000%02d", i), csrs[i], ""))
		})
	}
	close(start)
	wg.Wait()
	commits := tc.db.Commits() - before
	serials := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("enrollment %d: %v", i, errs[i])
		}
		s := keys.SerialHex(issued[i].Certificate.SerialNumber)
		if serials[s] {
			t.Errorf("serial %s issued twice", s)
		}
		serials[s] = true
	}
	t.Logf("%d enrollments in %d commits", n, commits)
	if commits >= n {
		t.Errorf("%d enrollments took %d commits; group commit should share them", n, commits)
	}
	certs, err := tc.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != n {
		t.Errorf("stored %d certificates want %d", len(certs), n)
	}
}

// TestTokenRace spends one token from 8 enrollments for 8 keys at once:
// exactly one wins, the others are told the token is used, and each refusal
// is stored (the peers proved they hold the token).
func TestTokenRace(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
	tok, _, err := tc.CreateToken(testSID, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	csrs := make([][]byte, n)
	for i := range csrs {
		csrs[i] = makeCSR(t, newKey(t), testSID)
	}
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = tc.Enroll(context.Background(), tc.req(t, wire.ProfileStudent, testSID, csrs[i], tok))
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		wantRefusal(t, err, wire.CodeTokenUsed)
	}
	if wins != 1 {
		t.Fatalf("%d enrollments won with one token, want 1", wins)
	}
	certs, err := tc.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 {
		t.Errorf("stored %d certificates want 1", len(certs))
	}
	if certs[0].Auth != "token" || certs[0].Peer == "" {
		t.Errorf("the accepted decision is not kept with the certificate: auth %q, peer %q", certs[0].Auth, certs[0].Peer)
	}
	ds, err := tc.Refusals(0)
	if err != nil {
		t.Fatal(err)
	}
	used := 0
	for _, d := range ds {
		if d.Code == wire.CodeTokenUsed {
			used++
		}
	}
	if used != n-1 || len(ds) != n-1 {
		t.Errorf("stored refusals: %d, %d of them token-used; want %d", len(ds), used, n-1)
	}
}

// TestReopenShowsEveryCertificate closes the store after enrollments and
// finds every certificate and decision after reopening.
func TestReopenShowsEveryCertificate(t *testing.T) {
	tc := newCA(t, nil)
	want := map[string]*Issued{}
	for i := range 5 {
		iss := tc.mustEnroll(t, fmt.Sprintf("115500000%d", i), "")
		want[keys.SerialHex(iss.Certificate.SerialNumber)] = iss
	}
	board, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileBoard, testBoard, fixtureCSR(t, "board.csr"), tc.boardToken(t)))
	if err != nil {
		t.Fatal(err)
	}
	want[keys.SerialHex(board.Certificate.SerialNumber)] = board
	tc.enroll(t, "bad", "") // an anonymous refusal: not stored
	// A refusal of a peer that proved its token: stored.
	_, err = tc.Enroll(t.Context(), tc.req(t, wire.ProfileBoard, testBoard, fixtureCSR(t, "p256.csr"), tc.boardToken(t)))
	wantRefusal(t, err, wire.CodeCNMismatch)

	tc = tc.reopen(t)
	certs, err := tc.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != len(want) {
		t.Fatalf("after reopen: %d certificates want %d", len(certs), len(want))
	}
	for _, c := range certs {
		iss, ok := want[keys.SerialHex(c.Serial)]
		if !ok {
			t.Errorf("unexpected certificate %X", c.Serial)
			continue
		}
		cert := iss.Certificate
		if string(c.DER) != string(cert.Raw) || c.SID != cert.Subject.CommonName || c.Status != StatusValid ||
			!c.NotAfter.Equal(cert.NotAfter) || !c.NotBefore.Equal(cert.NotBefore) || c.Subject != "CN="+c.SID {
			t.Errorf("record %+v does not match the certificate", c)
		}
		if wantProfile := uint8(wire.ProfileStudent); c.SID == testBoard {
			if c.Profile != wire.ProfileBoard {
				t.Errorf("board certificate has profile %d", c.Profile)
			}
		} else if c.Profile != wantProfile {
			t.Errorf("student certificate has profile %d", c.Profile)
		}
		one, found, err := tc.Certificate(c.Serial)
		if err != nil || !found || one.SID != c.SID {
			t.Errorf("Certificate(%X): %+v %v %v", c.Serial, one, found, err)
		}
	}
	ds, err := tc.Refusals(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Accepted || ds[0].Code != wire.CodeCNMismatch || ds[0].SID != testBoard {
		t.Errorf("stored refusals after reopen: %+v", ds)
	}
	// The clock passes the certificates' notAfter: they list as expired.
	tc.clock.Add(tc.opts.CertValidity + time.Hour)
	certs, err = tc.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		if c.Status != StatusExpired {
			t.Errorf("certificate %X: status %s want expired", c.Serial, c.Status)
		}
	}
}

// TestCommitRechecksToken checks two requests with one token for two keys,
// both past the early check, and commits them one after the other: the
// second commit sees the token spent and stores a refusal instead of a
// certificate. This is the path a lost race takes.
func TestCommitRechecksToken(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
	tok := tc.token(t, testSID)
	certs, grants, reqs := checkAndIssue(t, tc, 2, func(t *testing.T) Request {
		return tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, newKey(t), testSID), tok)
	})
	now := tc.now()
	if _, refusal, err := tc.commit(certs[0], reqs[0], grants[0], now); err != nil || refusal != nil {
		t.Fatalf("first commit: %v %v", refusal, err)
	}
	_, refusal, err := tc.commit(certs[1], reqs[1], grants[1], now)
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, refusal, wire.CodeTokenUsed)
	stored, err := tc.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].Serial.Cmp(certs[0].SerialNumber) != 0 {
		t.Errorf("stored %d certificates; want only the first", len(stored))
	}
	if ds, _ := tc.Refusals(1); len(ds) != 1 || ds[0].Code != wire.CodeTokenUsed {
		t.Errorf("last refusal %+v, want token-used", ds)
	}
}

// TestCommitRechecksTokenSameKey: two requests with one token for the same
// key pass the early check together (a client that asked again while its
// first request was being served); the second commit answers the first's
// certificate, and stores nothing.
func TestCommitRechecksTokenSameKey(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
	tok := tc.token(t, testSID)
	key := newKey(t)
	certs, grants, reqs := checkAndIssue(t, tc, 2, func(t *testing.T) Request {
		return tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, key, testSID), tok)
	})
	now := tc.now()
	first, refusal, err := tc.commit(certs[0], reqs[0], grants[0], now)
	if err != nil || refusal != nil {
		t.Fatalf("first commit: %v %v", refusal, err)
	}
	second, refusal, err := tc.commit(certs[1], reqs[1], grants[1], now)
	if err != nil || refusal != nil {
		t.Fatalf("second commit: %v %v", refusal, err)
	}
	if !second.Again || !bytes.Equal(second.Certificate.Raw, first.Certificate.Raw) {
		t.Errorf("second commit: got again=%v, serial %s; want the first certificate again", second.Again, keys.SerialHex(second.Certificate.SerialNumber))
	}
	if stored, _ := tc.Certificates(); len(stored) != 1 {
		t.Errorf("stored %d certificates; want 1", len(stored))
	}
}

// TestCommitRechecksRenewal: two renewals of one certificate for two keys
// pass the early check together; the second commit finds it renewed and
// stores a refusal.
func TestCommitRechecksRenewal(t *testing.T) {
	tc := newCA(t, nil)
	iss, key, err := tc.enrollKey(t, wire.ProfileStudent, testSID, "")
	if err != nil {
		t.Fatal(err)
	}
	certs, grants, reqs := checkAndIssue(t, tc, 2, func(t *testing.T) Request {
		r := tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, newKey(t), testSID), "")
		signRenewal(t, &r, iss.Certificate, key)
		return r
	})
	now := tc.now()
	if _, refusal, err := tc.commit(certs[0], reqs[0], grants[0], now); err != nil || refusal != nil {
		t.Fatalf("first commit: %v %v", refusal, err)
	}
	_, refusal, err := tc.commit(certs[1], reqs[1], grants[1], now)
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, refusal, wire.CodeBadRenewal)
	if stored, _ := tc.Certificates(); len(stored) != 2 {
		t.Errorf("stored %d certificates; want the renewed one and its successor", len(stored))
	}
}

// checkAndIssue checks n requests made by mk and issues their certificates,
// without committing any.
func checkAndIssue(t *testing.T, tc *testCA, n int, mk func(*testing.T) Request) ([]*x509.Certificate, []grant, []Request) {
	t.Helper()
	now := tc.now()
	var certs []*x509.Certificate
	var grants []grant
	var reqs []Request
	for range n {
		req := mk(t)
		c, refusal, err := tc.check(req, now)
		if err != nil || refusal != nil || c.again != nil {
			t.Fatalf("check: %v %v (again %v)", refusal, err, c.again != nil)
		}
		cert, err := tc.issue(c.csr.PublicKey, req, now)
		if err != nil {
			t.Fatal(err)
		}
		certs, grants, reqs = append(certs, cert), append(grants, c.grant), append(reqs, req)
	}
	return certs, grants, reqs
}
