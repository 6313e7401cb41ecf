package session

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"pkiboard/internal/fuzzseed"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// TestBoardStatusEdges checks the student's status check at the edges of the
// status's validity and of the CRL number seen.
func TestBoardStatusEdges(t *testing.T) {
	p := pki(t)
	this, next := time.Date(2030, 6, 1, 11, 59, 0, 0, time.UTC), time.Date(2030, 6, 1, 13, 0, 0, 0, time.UTC)
	data := p.boardStatus(t, func(s *wire.BoardStatus) {
		s.ThisUpdate, s.NextUpdate = uint64(this.Unix()), uint64(next.Unix())
	})
	for _, tt := range []struct {
		name string
		now  time.Time
		min  uint64
		code wire.Code // 0: accepted
	}{
		{"at this_update", this, 0, 0},
		{"at next_update", next, 0, 0},
		{"a second before", this.Add(-time.Second), 0, wire.CodeStaleStatus},
		{"a second after", next.Add(time.Second), 0, wire.CodeStaleStatus},
		{"CRL number seen", this, testCRLNumber, 0},
		{"higher CRL number seen", this, testCRLNumber + 1, wire.CodeStaleStatus},
	} {
		s, err := checkBoardStatus(data, p.board.leaf(), p.root.cert, tt.now, tt.min)
		switch {
		case tt.code == 0 && (err != nil || s == nil || s.CRLNumber != testCRLNumber):
			t.Errorf("%s: got %v, %v; want the status", tt.name, s, err)
		case tt.code != 0 && wire.CodeOf(err) != tt.code:
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.code)
		}
	}
}

func statusCheckSeeds(tb testing.TB) map[string][]byte {
	p := pki(tb)
	st := func(change func(*wire.BoardStatus)) []byte { return p.boardStatus(tb, change) }
	good := st(nil)
	return map[string][]byte{
		"valid":        good,
		"revoked":      st(func(s *wire.BoardStatus) { s.Revoked = true }),
		"expired":      st(func(s *wire.BoardStatus) { s.NextUpdate = uint64(fixedNow.Unix()) - 1 }),
		"old-crl":      st(func(s *wire.BoardStatus) { s.CRLNumber = testCRLNumber - 1 }),
		"other-cert":   st(func(s *wire.BoardStatus) { s.CertSHA256 = sha256.Sum256(nil) }),
		"other-serial": st(func(s *wire.BoardStatus) { s.Serial = []byte{9} }),
		"other-root":   signStatus(tb, mustParseStatus(tb, good), p.other.key),
		"truncated":    good[:len(good)-1],
		"empty":        {},
	}
}

// FuzzCheckBoardStatus feeds arbitrary statuses to the student's check of
// the board's status (PROTOCOL.md §5.1, STEP 5). It must never panic, refuse
// only with stale-status or board-revoked, and accept only a status the root
// signed for the board's certificate, good, valid at the fixed time and not
// older than the CRL number seen.
func FuzzCheckBoardStatus(f *testing.F) {
	for _, seed := range sortedSeeds(fuzzseed.Bytes(statusCheckSeeds(f))) {
		f.Add(seed[0].([]byte))
	}
	p := pki(f)
	board, root := p.board.leaf(), p.root.cert
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := checkBoardStatus(data, board, root, fixedNow, testCRLNumber)
		if err != nil {
			if c := wire.CodeOf(err); c != wire.CodeStaleStatus && c != wire.CodeBoardRevoked {
				t.Fatalf("refused with %v", err)
			}
			var ref *wire.Refusal
			if !errors.As(err, &ref) {
				t.Fatalf("refused with %T, not a *wire.Refusal", err)
			}
			return
		}
		signed, serr := s.SignedBytes()
		switch {
		case serr != nil || keys.Verify(root.PublicKey, signed, s.Signature) != nil:
			t.Fatal("accepted a status the root did not sign")
		case s.CertSHA256 != sha256.Sum256(board.Raw) || s.Revoked || s.CRLNumber < testCRLNumber || !statusCovers(s, fixedNow):
			t.Fatalf("accepted %+v", s)
		}
	})
}

// TestStatusCheckCorpus writes (with -update) or checks FuzzCheckBoardStatus's
// seeds; signatures are fresh each time, so only the valid one is checked
// for what it holds.
func TestStatusCheckCorpus(t *testing.T) {
	seeds := fuzzseed.Bytes(statusCheckSeeds(t))
	const how = "run go test ./session -run TestStatusCheckCorpus -update"
	if *update {
		if err := fuzzseed.Write("FuzzCheckBoardStatus", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzCheckBoardStatus", seeds, false, how)
}

// TestStatusSignatureRemembered checks the memory of verified status
// signatures: a status the root signed is remembered after its first check
// and accepted again; under another root the same bytes are refused; a
// remembered status is still checked against the time and the CRL number
// seen on every use; a status another key signed is refused and never
// remembered.
func TestStatusSignatureRemembered(t *testing.T) {
	p := pki(t)
	good := p.boardStatus(t, nil)
	forged := signStatus(t, mustParseStatus(t, good), p.other.key)
	board, root := p.board.leaf(), p.root.cert
	remembered := func(data []byte, root *x509.Certificate) bool {
		statusSigs.Lock()
		defer statusSigs.Unlock()
		_, ok := statusSigs.m[statusKey{root: sha256.Sum256(root.Raw), status: sha256.Sum256(data)}]
		return ok
	}
	for _, tt := range []struct {
		name           string
		data           []byte
		root           *x509.Certificate
		now            time.Time
		min            uint64
		code           wire.Code // 0: accepted
		wantRemembered bool
	}{
		{"first check", good, root, fixedNow, 0, 0, true},
		{"again", good, root, fixedNow, 0, 0, true},
		{"under another root", good, p.other.cert, fixedNow, 0, wire.CodeStaleStatus, false},
		{"remembered, but expired", good, root, pkiEnd.Add(time.Second), 0, wire.CodeStaleStatus, true},
		{"remembered, but a newer CRL seen", good, root, fixedNow, testCRLNumber + 1, wire.CodeStaleStatus, true},
		{"signed by another key", forged, root, fixedNow, 0, wire.CodeStaleStatus, false},
	} {
		_, err := checkBoardStatus(tt.data, board, tt.root, tt.now, tt.min)
		if got := wire.CodeOf(err); (tt.code == 0 && err != nil) || (tt.code != 0 && got != tt.code) {
			t.Errorf("%s: got %v, want code %v", tt.name, err, tt.code)
		}
		if got := remembered(tt.data, tt.root); got != tt.wantRemembered {
			t.Errorf("%s: remembered %v, want %v", tt.name, got, tt.wantRemembered)
		}
	}
}
