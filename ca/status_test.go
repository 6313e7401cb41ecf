package ca

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// TestBoardStatusFields checks the status of PROTOCOL.md §4.4: for the board
// certificate, signed by the root, with the current CRL number, backdated a
// minute and valid for DefaultStatusValidity after it; revoked after a
// revocation, with the new CRL's number; refused for a certificate that is not
// a board certificate of this CA.
func TestBoardStatusFields(t *testing.T) {
	tc := newCA(t, nil)
	board, _, err := tc.enrollKey(t, wire.ProfileBoard, testBoard, tc.boardToken(t))
	if err != nil {
		t.Fatal(err)
	}
	cert := board.Certificate
	check := func(revoked bool) *wire.BoardStatus {
		t.Helper()
		data, err := tc.BoardStatus(cert)
		if err != nil {
			t.Fatal(err)
		}
		s, err := wire.ParseBoardStatus(data)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := s.SignedBytes()
		if err := keys.Verify(tc.Root().PublicKey, msg, s.Signature); err != nil {
			t.Errorf("the status does not verify with the root: %v", err)
		}
		now := tc.clock.Now().UTC().Truncate(time.Second)
		crl, err := keys.ParseCRLPEM(mustCRL(t, tc))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case s.CertSHA256 != sha256.Sum256(cert.Raw) || string(s.Serial) != string(cert.SerialNumber.Bytes()):
			t.Errorf("the status is for serial %x, another certificate", s.Serial)
		case s.Revoked != revoked:
			t.Errorf("revoked = %v, want %v", s.Revoked, revoked)
		case s.CRLNumber != crl.Number.Uint64():
			t.Errorf("CRL number %d, want the current CRL's %s", s.CRLNumber, crl.Number)
		case s.ThisUpdate != uint64(now.Add(-time.Minute).Unix()) || s.NextUpdate != uint64(now.Add(DefaultStatusValidity).Unix()):
			t.Errorf("valid %d to %d, want %d to %d", s.ThisUpdate, s.NextUpdate, now.Add(-time.Minute).Unix(), now.Add(DefaultStatusValidity).Unix())
		}
		return s
	}
	good := check(false)
	if _, err := tc.Revoke(t.Context(), cert.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	if bad := check(true); bad.CRLNumber <= good.CRLNumber {
		t.Errorf("the revoked status has CRL number %d, not above the good one's %d", bad.CRLNumber, good.CRLNumber)
	}

	student := tc.mustEnroll(t, testSID, "")
	if _, err := tc.BoardStatus(student.Certificate); err == nil {
		t.Error("signed a board status for a student certificate")
	}
	other := newCA(t, nil)
	stranger, _, err := other.enrollKey(t, wire.ProfileBoard, testBoard, other.boardToken(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.BoardStatus(stranger.Certificate); err == nil {
		t.Error("signed a board status for another CA's certificate")
	}
}

// mustCRL returns the CA's current CRL, PEM.
func mustCRL(t *testing.T, tc *testCA) []byte {
	t.Helper()
	pem, err := tc.CRLPEM()
	if err != nil {
		t.Fatal(err)
	}
	return pem
}

// TestBoardStatusRefreshAfterSigning checks when a status is due again: half-way
// from its signing to its next_update, also when status_validity is shorter
// than the minute a status is backdated (half-way from this_update would then
// be past at once, and a watch would push new statuses without pause).
func TestBoardStatusRefreshAfterSigning(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.StatusValidity = 10 * time.Second })
	board, _, err := tc.enrollKey(t, wire.ProfileBoard, testBoard, tc.boardToken(t))
	if err != nil {
		t.Fatal(err)
	}
	status := func() []byte {
		t.Helper()
		data, err := tc.BoardStatus(board.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	first := status()
	for _, step := range []time.Duration{0, 4 * time.Second} {
		tc.clock.Add(step)
		if !bytes.Equal(status(), first) {
			t.Fatalf("%v after signing, the CA signed a new status; want the one held until 5s", step)
		}
	}
	tc.clock.Add(2 * time.Second)
	if bytes.Equal(status(), first) {
		t.Error("6s after signing, the CA returned the same status; want a new one (half-way to next_update)")
	}
}
