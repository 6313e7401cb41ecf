package session

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// statusTime returns a BoardStatus time (seconds since the Unix epoch) as a
// time.Time; a value too large for one is the far future.
func statusTime(s uint64) time.Time {
	if s > 1<<40 {
		return time.Unix(1<<40, 0)
	}
	return time.Unix(int64(s), 0)
}

// statusCovers reports whether now is within [this_update, next_update].
func statusCovers(s *wire.BoardStatus, now time.Time) bool {
	return !now.Before(statusTime(s.ThisUpdate)) && !now.After(statusTime(s.NextUpdate))
}

// heldStatus returns the status the board staples, from cfg.Status, if it
// holds one for its own certificate that is valid now; otherwise a
// crl-unavailable refusal. It checks no signature (the CA's status source
// did, and the student will): only what a misconfigured source could get
// wrong, cheaply. A status that says the board is revoked is stapled like any
// other: the student refuses it, board-revoked, and learns why.
func (cfg *serverSettings) heldStatus(now time.Time) ([]byte, error) {
	data := cfg.Status()
	if data != nil {
		s, err := wire.ParseBoardStatus(data)
		if err == nil && s.CertSHA256 == sha256.Sum256(cfg.Certificate.Raw) && statusCovers(s, now) {
			return data, nil
		}
	}
	return nil, wire.Refusef(wire.CodeCRLUnavailable,
		"the board holds no fresh status of its own from the CA to show you, so it accepts no session; try again later")
}

// checkBoardStatus is the student's check of the status the board stapled
// (PROTOCOL.md §5.1, STEP 5), in order: it decodes, the root signed it, it
// names cert (its serial and SHA-256) — else stale-status; it does not say
// revoked — else board-revoked; now is within its validity and its CRL
// number is at least minCRL — else stale-status. It returns the status.
func checkBoardStatus(data []byte, cert, root *x509.Certificate, now time.Time, minCRL uint64) (*wire.BoardStatus, error) {
	s, err := wire.ParseBoardStatus(data)
	if err != nil {
		return nil, wire.Refusef(wire.CodeStaleStatus,
			"the board's status does not decode (%v): this board cannot show that its certificate is good; tell the course staff", err)
	}
	if err := verifyStatusSignature(data, s, root); err != nil {
		return nil, wire.Refusef(wire.CodeStaleStatus,
			"the board's status is not signed by your root certificate: this is not the course's board, or the status was forged; tell the course staff")
	}
	if !bytes.Equal(s.Serial, cert.SerialNumber.Bytes()) || s.CertSHA256 != sha256.Sum256(cert.Raw) {
		return nil, wire.Refusef(wire.CodeStaleStatus,
			"the board's status is for another certificate (serial %x), not the one it presented (serial %s): tell the course staff",
			s.Serial, keys.SerialHex(cert.SerialNumber))
	}
	if s.Revoked {
		return nil, wire.Refusef(wire.CodeBoardRevoked,
			"the CA says the board's certificate (serial %s) is revoked: do not submit to this board; tell the course staff",
			keys.SerialHex(cert.SerialNumber))
	}
	if !statusCovers(s, now) {
		return nil, wire.Refusef(wire.CodeStaleStatus,
			"the board's status is valid from %s to %s and your time is %s: check your clock, or tell the course staff that the board's status is stale",
			utc(statusTime(s.ThisUpdate)), utc(statusTime(s.NextUpdate)), utc(now))
	}
	if s.CRLNumber < minCRL {
		return nil, wire.Refusef(wire.CodeStaleStatus,
			"the board's status was signed at CRL number %d, but you have already seen a status of CRL number %d: the board shows an old status (it may have been revoked since); tell the course staff",
			s.CRLNumber, minCRL)
	}
	return s, nil
}

// maxStatusSigs bounds statusSigs; when it is full it starts afresh.
const maxStatusSigs = 64

// statusSigs remembers the statuses whose root signature verified, per root
// and per status (the SHA-256 of its encoding, signature included): a board
// staples the same status to every session until the CA signs the next, so a
// student's next session costs a hash and a lookup, not a signature
// verification. Only the signature is remembered: what depends on the
// certificate, the time or the CRL number seen is checked on every use.
var statusSigs = struct {
	sync.Mutex
	m map[statusKey]struct{}
}{m: make(map[statusKey]struct{})}

type statusKey struct {
	root   [sha256.Size]byte // the root's fingerprint
	status [sha256.Size]byte // the status's encoding's
}

// verifyStatusSignature checks that root signed s, decoded from data, or
// that it was found to before.
func verifyStatusSignature(data []byte, s *wire.BoardStatus, root *x509.Certificate) error {
	key := statusKey{root: sha256.Sum256(root.Raw), status: sha256.Sum256(data)}
	statusSigs.Lock()
	_, ok := statusSigs.m[key]
	statusSigs.Unlock()
	if ok {
		return nil
	}
	signed, err := s.SignedBytes()
	if err == nil {
		err = keys.Verify(root.PublicKey, signed, s.Signature)
	}
	if err != nil {
		return err
	}
	statusSigs.Lock()
	if len(statusSigs.m) >= maxStatusSigs {
		clear(statusSigs.m)
	}
	statusSigs.m[key] = struct{}{}
	statusSigs.Unlock()
	return nil
}
