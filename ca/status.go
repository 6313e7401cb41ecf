package ca

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// signedStatus is a board's status as the CA signed it, held until a new CRL
// or the status's half-life makes it due for another.
type signedStatus struct {
	encoded   []byte
	crlNumber uint64
	revoked   bool
	refresh   time.Time // half-way from its signing to next_update: when it is due again
	expires   time.Time // next_update
}

// BoardStatus returns the status of PROTOCOL.md §4.4 for cert, a board
// certificate (profile 2) this CA issued: a wire.BoardStatus naming cert, the
// current CRL number and whether cert is revoked, valid from a minute ago to
// StatusValidity from now, signed with the root key, and encoded.
//
// Statuses are cached per certificate: BoardStatus signs a new one only when
// none is held for cert, when a CRL was published since the one held, or when
// the one held is half-way to its next_update; otherwise it returns the bytes
// it returned before. It is called for a board that proved it holds cert's key
// (its watch, PROTOCOL.md §4.4), so an anonymous peer can never make the CA
// sign. A certificate this CA did not issue, that is not a board's, or that
// has expired is an error.
func (a *Authority) BoardStatus(cert *x509.Certificate) ([]byte, error) {
	s, _, err := a.statusUpdate(cert)
	if err != nil {
		return nil, err
	}
	return s.encoded, nil
}

// statusUpdate returns cert's status (as BoardStatus does) and the CRL it
// names, in DER.
func (a *Authority) statusUpdate(cert *x509.Certificate) (*signedStatus, []byte, error) {
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	s, err := a.boardStatus(cert, a.now())
	if err != nil {
		return nil, nil, err
	}
	return s, a.crl.Raw, nil
}

// boardStatus returns the status held for cert, or signs a new one. a.crlMu is
// held, so that the revocation it reads from the store and the CRL number it
// names are those of one moment.
func (a *Authority) boardStatus(cert *x509.Certificate, now time.Time) (*signedStatus, error) {
	sum := sha256.Sum256(cert.Raw)
	if a.crl == nil || a.crlDirty {
		// A revocation is committed but its CRL is not out: issue it first,
		// so that the status names a CRL that lists it.
		if err := a.issueCRL(now); err != nil {
			return nil, err
		}
	}
	number := a.crl.Number.Uint64()
	if s := a.statuses[sum]; s != nil && s.crlNumber == number && now.Before(s.refresh) {
		return s, nil
	}
	rec, err := a.issuedRecord(cert)
	if err != nil {
		return nil, err
	}
	if rec.Profile != wire.ProfileBoard {
		return nil, fmt.Errorf("ca: certificate %s is not a board certificate", keys.SerialHex(cert.SerialNumber))
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("ca: board certificate %s expired at %s", keys.SerialHex(cert.SerialNumber), cert.NotAfter.UTC().Format(timeLayout))
	}
	this := now.Add(-backdate)
	next := this.Add(a.o.StatusValidity + backdate)
	st := &wire.BoardStatus{
		Serial:     cert.SerialNumber.Bytes(),
		CertSHA256: sum,
		CRLNumber:  number,
		Revoked:    rec.Status == StatusRevoked,
		ThisUpdate: uint64(this.Unix()),
		NextUpdate: uint64(next.Unix()),
	}
	msg, err := st.SignedBytes()
	if err != nil {
		return nil, fmt.Errorf("ca: board status: %w", err)
	}
	if st.Signature, err = keys.Sign(a.key, a.o.Rand, msg); err != nil {
		return nil, fmt.Errorf("ca: sign board status: %w", err)
	}
	enc, err := st.Marshal()
	if err != nil {
		return nil, fmt.Errorf("ca: board status: %w", err)
	}
	s := &signedStatus{
		encoded:   enc,
		crlNumber: number,
		revoked:   st.Revoked,
		// Half-way from now, not from this_update: a status_validity
		// shorter than the backdated minute would otherwise be due again
		// as soon as it is signed, and the watch would push without pause.
		refresh: now.Add(next.Sub(now) / 2),
		expires: next,
	}
	a.statuses[sum] = s
	return s, nil
}

// errNotIssued says a certificate is not one this CA issued.
var errNotIssued = errors.New("not a certificate this CA issued")

// issuedRecord returns the store's record of cert, which must hold exactly
// cert's bytes: a certificate with a serial of ours but other bytes (signed by
// another key, or altered) is errNotIssued.
func (a *Authority) issuedRecord(cert *x509.Certificate) (certRecord, error) {
	var rec certRecord
	var found bool
	err := a.db.View(func(tx *sql.Tx) error {
		var err error
		rec, found, err = getCert(tx, keys.SerialHex(cert.SerialNumber))
		return err
	})
	switch {
	case err != nil:
		return rec, fmt.Errorf("ca: read certificate: %w", err)
	case !found || !bytes.Equal(rec.DER, cert.Raw):
		return rec, fmt.Errorf("ca: certificate %s: %w", keys.SerialHex(cert.SerialNumber), errNotIssued)
	}
	return rec, nil
}
