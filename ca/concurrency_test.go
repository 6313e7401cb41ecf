package ca

import (
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
			issued[i], errs[i] = tc.Enroll(context.Background(), Request{
				Profile: wire.ProfileStudent, SID: fmt.Sprintf("11550000%02d", i), CSR: csrs[i],
			})
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

// TestTokenRace spends one token from 8 enrollments at once: exactly one
// wins, the others are told the token is used.
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
			_, errs[i] = tc.Enroll(context.Background(), Request{Profile: wire.ProfileStudent, SID: testSID, CSR: csrs[i], Token: tok})
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
	ds, err := tc.Decisions(0)
	if err != nil {
		t.Fatal(err)
	}
	accepted, used := 0, 0
	for _, d := range ds {
		switch {
		case d.Accepted:
			accepted++
			if d.Serial == nil || d.Serial.Cmp(certs[0].Serial) != 0 {
				t.Errorf("accepted decision names serial %v, want %X", d.Serial, certs[0].Serial)
			}
		case d.Code == wire.CodeTokenUsed:
			used++
		}
	}
	if accepted != 1 || used != n-1 {
		t.Errorf("decisions: %d accepted, %d token-used; want 1 and %d", accepted, used, n-1)
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
	board, err := tc.Enroll(t.Context(), Request{Profile: wire.ProfileBoard, SID: testBoard, CSR: fixtureCSR(t, "board.csr"), Token: tc.boardSecret(t)})
	if err != nil {
		t.Fatal(err)
	}
	want[keys.SerialHex(board.Certificate.SerialNumber)] = board
	tc.enroll(t, "bad", "") // a refusal, recorded too

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
	ds, err := tc.Decisions(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 7 || ds[0].Accepted || ds[0].Code != wire.CodeBadSID || !ds[1].Accepted {
		t.Errorf("decisions after reopen (newest first): %+v", ds)
	}
	for i := 1; i < len(ds); i++ {
		if ds[i].Seq >= ds[i-1].Seq {
			t.Errorf("decisions not newest first: %d then %d", ds[i-1].Seq, ds[i].Seq)
		}
	}
	if ds, _ := tc.Decisions(2); len(ds) != 2 {
		t.Errorf("Decisions(2) returned %d", len(ds))
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

// TestCommitRechecksToken checks two requests with one token, both past the
// early check, and commits them one after the other: the second commit sees
// the token spent and records a refusal instead of a certificate. This is
// the path a lost race takes.
func TestCommitRechecksToken(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
	tok, _, err := tc.CreateToken(testSID, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := tc.now()
	var certs []*x509.Certificate
	var grants []grant
	var reqs []Request
	for range 2 {
		req := Request{Profile: wire.ProfileStudent, SID: testSID, CSR: makeCSR(t, newKey(t), testSID), Token: tok}
		csr, g, refusal, err := tc.check(req, now)
		if err != nil || refusal != nil {
			t.Fatalf("check: %v %v", refusal, err)
		}
		cert, err := tc.issue(csr.PublicKey, req, now)
		if err != nil {
			t.Fatal(err)
		}
		certs, grants, reqs = append(certs, cert), append(grants, g), append(reqs, req)
	}
	if refusal, err := tc.commit(certs[0], reqs[0], grants[0], now); err != nil || refusal != nil {
		t.Fatalf("first commit: %v %v", refusal, err)
	}
	refusal, err := tc.commit(certs[1], reqs[1], grants[1], now)
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
	if ds, _ := tc.Decisions(1); len(ds) != 1 || ds[0].Code != wire.CodeTokenUsed {
		t.Errorf("last decision %+v, want token-used", ds)
	}
}
