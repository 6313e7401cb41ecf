package session

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"pkiboard/wire"
)

// TestJudgeReceipt checks the receipt-validity policy of PROTOCOL.md §5.5,
// row by row, at the edge of the revocation time.
func TestJudgeReceipt(t *testing.T) {
	p := pki(t)
	board := p.board.leaf()
	revoked := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	crl := func(tb testing.TB, signer *testCA, entries ...x509.RevocationListEntry) *x509.RevocationList {
		tb.Helper()
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(7), ThisUpdate: revoked, NextUpdate: revoked.Add(time.Hour),
			RevokedCertificateEntries: entries,
		}, signer.cert, signer.key)
		if err != nil {
			tb.Fatal(err)
		}
		c, err := x509.ParseRevocationList(der)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	entry := func(reason int) x509.RevocationListEntry {
		return x509.RevocationListEntry{SerialNumber: board.SerialNumber, RevocationTime: revoked, ReasonCode: reason}
	}
	other := x509.RevocationListEntry{SerialNumber: big.NewInt(12345), RevocationTime: revoked, ReasonCode: 1}
	receipt := func(at time.Time) *wire.Receipt {
		return &wire.Receipt{Received: uint64(at.UnixMilli()), BoardCertSHA256: sha256.Sum256(board.Raw)}
	}
	before, at := revoked.Add(-time.Millisecond), revoked
	for _, tt := range []struct {
		name     string
		crl      *x509.RevocationList
		received time.Time
		want     ReceiptValidity
		says     string
	}{
		{"not on the CRL", crl(t, p.root, other), at, ReceiptValid, "not on the CRL"},
		{"keyCompromise, before", crl(t, p.root, entry(1)), before, ReceiptSuspect, "other evidence"},
		{"keyCompromise, at", crl(t, p.root, entry(1)), at, ReceiptInvalid, "at or after"},
		{"cACompromise, before", crl(t, p.root, entry(2)), before, ReceiptSuspect, "cACompromise"},
		{"superseded, before", crl(t, p.root, entry(4)), before, ReceiptValid, "superseded"},
		{"superseded, at", crl(t, p.root, entry(4)), at, ReceiptInvalid, "at or after"},
		{"cessationOfOperation, before", crl(t, p.root, entry(5)), before, ReceiptValid, "cessationOfOperation"},
		{"unspecified, after", crl(t, p.root, entry(0)), at.Add(time.Hour), ReceiptInvalid, "unspecified"},
	} {
		got, why, err := JudgeReceipt(receipt(tt.received), board, p.root.cert, tt.crl)
		if err != nil || got != tt.want || !strings.Contains(why, tt.says) {
			t.Errorf("%s: got %v (%q, %v), want %v saying %q", tt.name, got, why, err, tt.want, tt.says)
		}
	}
	if _, _, err := JudgeReceipt(receipt(at), board, p.root.cert, crl(t, p.other, entry(1))); err == nil {
		t.Error("a CRL of another root was used")
	}
	if _, _, err := JudgeReceipt(receipt(at), p.students["p256"].leaf(), p.root.cert, crl(t, p.root)); err == nil {
		t.Error("a receipt was judged with another certificate than the one it names")
	}
}
