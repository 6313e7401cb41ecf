package ca

import (
	"bytes"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// currentCRL returns the CA's CRL, checked against the root, and checks
// that crl.pem holds the same.
func currentCRL(t *testing.T, tc *testCA) *x509.RevocationList {
	t.Helper()
	data, err := tc.CRLPEM()
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(tc.opts.Dir, CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, data) {
		t.Error("crl.pem differs from CRLPEM()")
	}
	crl, err := keys.ParseCRLPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(tc.Root()); err != nil {
		t.Fatalf("CRL does not verify against the root: %v", err)
	}
	return crl
}

// crlReasons maps the serials (hex) on crl to their reason codes.
func crlReasons(t *testing.T, crl *x509.RevocationList) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, e := range crl.RevokedCertificateEntries {
		m[keys.SerialHex(e.SerialNumber)] = e.ReasonCode
		for _, ext := range e.Extensions {
			if ext.Id.Equal(oidReasonCode) && e.ReasonCode == ReasonUnspecified {
				t.Errorf("entry %X: reasonCode extension present for unspecified (RFC 5280 §5.3.1 says omit it)", e.SerialNumber)
			}
		}
	}
	return m
}

func TestRevoke(t *testing.T) {
	tc := newCA(t, nil)
	first := currentCRL(t, tc)
	if first.Number.Sign() <= 0 || len(first.RevokedCertificateEntries) != 0 {
		t.Fatalf("first CRL: number %v, %d entries", first.Number, len(first.RevokedCertificateEntries))
	}
	if !first.ThisUpdate.Equal(t0) || !first.NextUpdate.Equal(t0.Add(tc.opts.CRLValidity)) {
		t.Errorf("first CRL: thisUpdate %s nextUpdate %s", first.ThisUpdate, first.NextUpdate)
	}
	if !bytes.Equal(first.AuthorityKeyId, tc.Root().SubjectKeyId) {
		t.Error("CRL's authorityKeyIdentifier is not the root's SKI")
	}
	var a []*Issued
	for range 3 {
		a = append(a, tc.mustEnroll(t, "1155000001", ""))
	}
	b := tc.mustEnroll(t, "1155000002", "")
	c := tc.mustEnroll(t, "1155000003", "")
	serialOf := func(i *Issued) *big.Int { return i.Certificate.SerialNumber }

	// By serial.
	tc.clock.Add(time.Hour)
	if _, err := tc.Revoke(t.Context(), serialOf(b), ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	crl := currentCRL(t, tc)
	if crl.Number.Cmp(first.Number) <= 0 {
		t.Errorf("CRL number %v did not increase from %v", crl.Number, first.Number)
	}
	if got := crlReasons(t, crl); len(got) != 1 || got[keys.SerialHex(serialOf(b))] != ReasonKeyCompromise {
		t.Errorf("CRL after revoking b: %v", got)
	}
	if e := crl.RevokedCertificateEntries[0]; !e.RevocationTime.Equal(t0.Add(time.Hour)) {
		t.Errorf("revocation time %s want %s", e.RevocationTime, t0.Add(time.Hour))
	}
	_, err := tc.Revoke(t.Context(), serialOf(b), ReasonSuperseded)
	if err == nil || !strings.Contains(err.Error(), "certificate "+keys.SerialHex(serialOf(b))+" (SID") ||
		!strings.Contains(err.Error(), "already revoked at 2026-03-01 10:00:00 UTC (keyCompromise)") {
		t.Errorf("second revocation: got %v", err)
	}
	if _, err := tc.Revoke(t.Context(), big.NewInt(12345), ReasonKeyCompromise); err == nil || !strings.Contains(err.Error(), "no certificate with serial 3039") {
		t.Errorf("unknown serial: got %v", err)
	}

	// By SID, with the unspecified reason.
	second := crl
	res, err := tc.RevokeSID(t.Context(), "1155000001", ReasonUnspecified)
	if err != nil || res.Revoked != 3 {
		t.Fatalf("RevokeSID: %d, %v want 3", res.Revoked, err)
	}
	if res.CRL.Number <= second.Number.Uint64() || res.CRL.SaveErr != nil || res.CRL.Watching != 0 {
		t.Errorf("RevokeSID's CRL: %+v", res.CRL)
	}
	crl = currentCRL(t, tc)
	if crl.Number.Cmp(second.Number) <= 0 {
		t.Errorf("CRL number %v did not increase from %v", crl.Number, second.Number)
	}
	got := crlReasons(t, crl)
	if len(got) != 4 {
		t.Errorf("CRL lists %d serials want 4", len(got))
	}
	for _, iss := range a {
		if r, ok := got[keys.SerialHex(serialOf(iss))]; !ok || r != ReasonUnspecified {
			t.Errorf("serial %X: listed %v reason %d", serialOf(iss), ok, r)
		}
	}
	if _, ok := got[keys.SerialHex(serialOf(c))]; ok {
		t.Error("an unrevoked certificate is on the CRL")
	}
	if res, err := tc.RevokeSID(t.Context(), "1155000001", ReasonSuperseded); err != nil || res.Revoked != 0 {
		t.Errorf("RevokeSID again: %d, %v want 0, nil", res.Revoked, err)
	}
	if currentCRL(t, tc).Number.Cmp(crl.Number) != 0 {
		t.Error("revoking nothing issued a new CRL")
	}
	if _, err := tc.RevokeSID(t.Context(), "1155000099", ReasonSuperseded); err == nil || !strings.Contains(err.Error(), "no certificate was issued to SID") {
		t.Errorf("RevokeSID of an unknown SID: got %v", err)
	}

	// The listing agrees.
	certs, err := tc.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range certs {
		wantStatus := StatusRevoked
		if rec.Serial.Cmp(serialOf(c)) == 0 {
			wantStatus = StatusValid
		}
		if rec.Status != wantStatus {
			t.Errorf("%X: status %s want %s", rec.Serial, rec.Status, wantStatus)
		}
		if rec.Serial.Cmp(serialOf(b)) == 0 && (rec.Reason != ReasonKeyCompromise || !rec.RevokedAt.Equal(t0.Add(time.Hour))) {
			t.Errorf("b: reason %d revoked at %s", rec.Reason, rec.RevokedAt)
		}
	}

	// Reasons pkiboard cannot honour.
	for _, r := range []int{ReasonCertificateHold, ReasonRemoveFromCRL, 7, 11, -1} {
		if _, err := tc.Revoke(t.Context(), serialOf(c), r); err == nil {
			t.Errorf("reason %d accepted", r)
		}
	}

	// After a reopen the CRL and its number stay.
	tc = tc.reopen(t)
	if got := currentCRL(t, tc); got.Number.Cmp(crl.Number) != 0 {
		t.Errorf("CRL number after reopen %v want %v", got.Number, crl.Number)
	}
}

func TestParseReason(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"unspecified", 0, true},
		{"keyCompromise", 1, true},
		{"key-compromise", 1, true},
		{"KEY_COMPROMISE", 1, true},
		{"cACompromise", 2, true},
		{"ca-compromise", 2, true},
		{"affiliationChanged", 3, true},
		{"superseded", 4, true},
		{"cessation-of-operation", 5, true},
		{"certificateHold", 6, true},
		{"removeFromCRL", 8, true},
		{"privilegeWithdrawn", 9, true},
		{"aa-compromise", 10, true},
		{"4", 4, true},
		{"7", 0, false},
		{"11", 0, false},
		{"-1", 0, false},
		{"compromised", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseReason(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseReason(%q): got %d, %v want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err == nil && ReasonName(got) == "" {
			t.Errorf("ReasonName(%d) is empty", got)
		}
	}
	if got := ReasonName(1); got != "keyCompromise" {
		t.Errorf("ReasonName(1) = %s", got)
	}
}

// TestCRLRefresh checks that a CRL is replaced once past half its validity,
// once, however many callers ask at the same time.
func TestCRLRefresh(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.CRLValidity = 24 * time.Hour })
	first := currentCRL(t, tc)
	tc.clock.Add(12*time.Hour - time.Second)
	if got := currentCRL(t, tc); got.Number.Cmp(first.Number) != 0 {
		t.Errorf("CRL replaced before half its validity")
	}
	tc.clock.Add(time.Second)
	var wg sync.WaitGroup
	pems := make([][]byte, 16)
	for i := range pems {
		wg.Go(func() {
			var err error
			pems[i], err = tc.CRLPEM()
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, p := range pems[1:] {
		if !bytes.Equal(p, pems[0]) {
			t.Fatal("concurrent callers got different CRLs")
		}
	}
	got := currentCRL(t, tc)
	if want := new(big.Int).Add(first.Number, big.NewInt(1)); got.Number.Cmp(want) != 0 {
		t.Errorf("CRL number %v want %v (one new CRL)", got.Number, want)
	}
	if !got.ThisUpdate.Equal(tc.clock.Now()) {
		t.Errorf("thisUpdate %s want %s", got.ThisUpdate, tc.clock.Now())
	}
}

// TestCRLOnOpen checks the cases in which Open issues a new CRL.
func TestCRLOnOpen(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, tc *testCA, old []byte)
		renewed bool
	}{
		{"fresh", func(*testing.T, *testCA, []byte) {}, false},
		{"missing", func(t *testing.T, tc *testCA, _ []byte) { os.Remove(filepath.Join(tc.opts.Dir, CRLFile)) }, true},
		{"stale", func(t *testing.T, tc *testCA, _ []byte) { tc.clock.Add(tc.opts.CRLValidity/2 + time.Second) }, true},
		{"garbage", func(t *testing.T, tc *testCA, _ []byte) { writeFile(t, tc.opts.Dir, CRLFile, []byte("junk")) }, true},
		// A crash after a revocation was stored and before its CRL was
		// written leaves the previous CRL behind.
		{"misses a revocation", func(t *testing.T, tc *testCA, old []byte) { writeFile(t, tc.opts.Dir, CRLFile, old) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newCA(t, nil)
			iss := tc.mustEnroll(t, testSID, "")
			old, err := tc.CRLPEM()
			if err != nil {
				t.Fatal(err)
			}
			old = bytes.Clone(old)
			if _, err := tc.Revoke(t.Context(), iss.Certificate.SerialNumber, ReasonSuperseded); err != nil {
				t.Fatal(err)
			}
			before := currentCRL(t, tc)
			if err := tc.Close(); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, tc, old)
			tc = open(t, tc.opts, tc.clock)
			data, err := os.ReadFile(filepath.Join(tc.opts.Dir, CRLFile))
			if err != nil {
				t.Fatal(err)
			}
			crl, err := keys.ParseCRLPEM(data)
			if err != nil {
				t.Fatal(err)
			}
			renewed := crl.Number.Cmp(before.Number) > 0
			if renewed != tt.renewed {
				t.Errorf("CRL number %v after %v: renewed %v want %v", crl.Number, before.Number, renewed, tt.renewed)
			}
			if got := crlReasons(t, crl); got[keys.SerialHex(iss.Certificate.SerialNumber)] != ReasonSuperseded {
				t.Errorf("the revoked certificate is not on the CRL: %v", got)
			}
		})
	}
}

// TestCRLNumberSurvivesStoreLoss checks that a CRL number is never reused
// even if the store's counter is behind crl.pem's.
func TestCRLNumberSurvivesStoreLoss(t *testing.T) {
	tc := newCA(t, nil)
	for range 3 {
		tc.clock.Add(tc.opts.CRLValidity)
		currentCRL(t, tc)
	}
	last := currentCRL(t, tc).Number
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tc.opts.Dir, DBFile)); err != nil {
		t.Fatal(err)
	}
	tc = open(t, tc.opts, tc.clock)
	tc.clock.Add(tc.opts.CRLValidity)
	if got := currentCRL(t, tc).Number; got.Cmp(last) <= 0 {
		t.Errorf("CRL number %v after losing the store, want more than %v", got, last)
	}
}

// TestCertView checks the operator view of certificates (`pkiboard certs
// --json`): valid, revoked with its time and reason, the board's, expired.
func TestCertView(t *testing.T) {
	tc := newCA(t, nil)
	student := tc.mustEnroll(t, testSID, "").Certificate
	revoked := tc.mustEnroll(t, "1155000002", "").Certificate
	iss, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileBoard, testBoard, makeCSR(t, newKey(t), testBoard), tc.boardToken(t)))
	if err != nil {
		t.Fatal(err)
	}
	board := iss.Certificate
	tc.clock.Add(time.Hour)
	if _, err := tc.Revoke(t.Context(), revoked.SerialNumber, ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	views := func() map[string]CertView {
		recs, err := tc.Certificates()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]CertView{}
		for _, r := range recs {
			out[r.SID] = r.View()
		}
		return out
	}
	got := views()
	want := map[string]CertView{
		testSID:      {Serial: keys.SerialHex(student.SerialNumber), SID: testSID, Profile: "student", NotAfter: student.NotAfter, Status: "valid"},
		"1155000002": {Serial: keys.SerialHex(revoked.SerialNumber), SID: "1155000002", Profile: "student", NotAfter: revoked.NotAfter, Status: "revoked", RevokedAt: t0.Add(time.Hour), Reason: "keyCompromise"},
		testBoard:    {Serial: keys.SerialHex(board.SerialNumber), SID: testBoard, Profile: "board", NotAfter: board.NotAfter, Status: "valid"},
	}
	for sid, w := range want {
		if g := got[sid]; g.Serial != w.Serial || g.SID != w.SID || g.Profile != w.Profile || !g.NotAfter.Equal(w.NotAfter) ||
			g.Status != w.Status || !g.RevokedAt.Equal(w.RevokedAt) || g.Reason != w.Reason {
			t.Errorf("%s: got %+v want %+v", sid, g, w)
		}
	}
	tc.clock.Add(tc.opts.CertValidity)
	if got := views()[testSID].Status; got != "expired" {
		t.Errorf("after notAfter: status %q want expired", got)
	}
}

// TestParseReasonListsOnlyAcceptedReasons: the list an unknown reason is
// answered with holds no reason a revocation then refuses.
func TestParseReasonListsOnlyAcceptedReasons(t *testing.T) {
	_, err := ParseReason("no-such-reason")
	if err == nil {
		t.Fatal("an unknown reason was accepted")
	}
	for _, refused := range []string{"certificateHold", "removeFromCRL"} {
		if strings.Contains(err.Error(), refused) {
			t.Errorf("got %q, which offers %s, a reason revoke refuses", err, refused)
		}
	}
	for _, name := range AcceptedReasons() {
		code, err := ParseReason(name)
		if err != nil || checkRevocationReason(code) != nil {
			t.Errorf("%s: listed as accepted but ParseReason gives %v, check gives %v", name, err, checkRevocationReason(code))
		}
	}
}

// TestParseAcceptedReason: what revoke --reason checks before any work
// refuses the reasons a revocation would refuse, and takes the others.
func TestParseAcceptedReason(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"keyCompromise", ReasonKeyCompromise, true},
		{"superseded", 4, true},
		{"certificateHold", 0, false},
		{"remove-from-crl", 0, false},
		{"6", 0, false},
		{"bored", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseAcceptedReason(tt.in)
		if (err == nil) != tt.ok || tt.ok && got != tt.want {
			t.Errorf("ParseAcceptedReason(%q): got %d, %v want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
