package ca

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// DefaultStatusValidity is how long a board status is valid after the minute
// it is backdated (PROTOCOL.md §4.4, ca.status_validity).
const DefaultStatusValidity = time.Hour

// SignBoardStatus signs the current BoardStatus of a board certificate this
// CA issued (PROTOCOL.md §4.4), encoded as the board staples it: the
// certificate's serial and SHA-256, the number of the CA's current CRL, whether
// the certificate is revoked, this_update one minute before now and
// next_update DefaultStatusValidity and that minute later, and the root key's
// signature. A certificate the CA did not issue with exactly these bytes, or
// not as a board certificate, is an error. The CRL is reissued first if it
// misses a revocation or is past half its validity, so that the number and
// the revocation agree.
func (a *Authority) SignBoardStatus(cert *x509.Certificate) ([]byte, error) {
	if cert == nil {
		return nil, errors.New("ca: board status: no certificate")
	}
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	now := a.now()
	if a.crl == nil || a.crlDirty || a.stale(now) {
		if err := a.issueCRL(now); err != nil {
			return nil, fmt.Errorf("ca: board status: %w", err)
		}
	}
	rec, found, err := a.Certificate(cert.SerialNumber)
	switch {
	case err != nil:
		return nil, fmt.Errorf("ca: board status: %w", err)
	case !found || !bytes.Equal(rec.DER, cert.Raw):
		return nil, fmt.Errorf("ca: board status: certificate %s was not issued by this CA", keys.SerialHex(cert.SerialNumber))
	case rec.Profile != wire.ProfileBoard:
		return nil, fmt.Errorf("ca: board status: certificate %s is not a board certificate", keys.SerialHex(cert.SerialNumber))
	case !a.crl.Number.IsUint64():
		return nil, fmt.Errorf("ca: board status: CRL number %s does not fit a u64", a.crl.Number)
	}
	this := now.Add(-backdate)
	s := &wire.BoardStatus{
		Serial:     cert.SerialNumber.Bytes(),
		CertSHA256: sha256.Sum256(cert.Raw),
		CRLNumber:  a.crl.Number.Uint64(),
		Revoked:    rec.Status == StatusRevoked,
		ThisUpdate: uint64(this.Unix()),
		NextUpdate: uint64(this.Add(DefaultStatusValidity + backdate).Unix()),
	}
	msg, err := s.SignedBytes()
	if err != nil {
		return nil, fmt.Errorf("ca: board status: %w", err)
	}
	if s.Signature, err = keys.Sign(a.key, a.o.Rand, msg); err != nil {
		return nil, fmt.Errorf("ca: board status: %w", err)
	}
	return s.Marshal()
}
