package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/internal/sqlstore"
	"pkiboard/wire"
)

// MaxStoredRefusals bounds the refusals ca.db keeps: the last ones of peers
// that proved possession of a token or a certificate (PROTOCOL.md §4.2).
const MaxStoredRefusals = 10000

// Status is a certificate's state in the operator listing.
type Status string

// The states of a certificate.
const (
	StatusValid   Status = "valid"   // issued, not revoked, not expired
	StatusRevoked Status = "revoked" // revoked (whether or not also expired)
	StatusExpired Status = "expired" // past notAfter, never revoked
)

// CertRecord describes an issued certificate, for the operator listing.
type CertRecord struct {
	Serial    *big.Int
	SID       string
	Profile   uint8 // wire.ProfileStudent or wire.ProfileBoard
	Subject   string
	NotBefore time.Time
	NotAfter  time.Time
	Status    Status    // as of the call that returned the record
	RevokedAt time.Time // zero unless revoked
	Reason    int       // the CRLReason (see ReasonName) when revoked
	DER       []byte    // the certificate
	// Peer is the address the request came from; Auth how it was
	// authorized: "none", "token" or "renewal".
	Peer string
	Auth string
	// Renews is the serial of the certificate this one renewed (nil when
	// none); SupersededBy that of the certificate that renewed this one.
	Renews       *big.Int
	SupersededBy *big.Int
}

// CertView is an issued certificate as the operator commands show it: the
// JSON of `pkiboard certs --json`.
type CertView struct {
	Serial    string    `json:"serial"` // hex
	SID       string    `json:"sid"`
	Profile   string    `json:"profile"` // "student" or "board"
	NotAfter  time.Time `json:"not_after"`
	Status    string    `json:"status"` // "valid", "expired" or "revoked"
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// View returns r as the operator commands show it.
func (r CertRecord) View() CertView {
	v := CertView{
		Serial:   keys.SerialHex(r.Serial),
		SID:      r.SID,
		Profile:  "student",
		NotAfter: r.NotAfter,
		Status:   string(r.Status),
	}
	if r.Profile == wire.ProfileBoard {
		v.Profile = "board"
	}
	if r.Status == StatusRevoked {
		v.RevokedAt, v.Reason = r.RevokedAt, ReasonName(r.Reason)
	}
	return v
}

// Decision is one stored enrollment decision: a refusal after the peer
// proved possession of a token or a certificate (see Refusals). An accepted
// decision is kept with its certificate (CertRecord.Peer, Auth, Renews).
type Decision struct {
	Seq      uint64 // increasing with time
	Time     time.Time
	SID      string
	Peer     string
	Profile  uint8
	Accepted bool
	Code     wire.Code // the refusal's code; 0 when accepted
	Reason   string    // the refusal's text; empty when accepted
	Serial   *big.Int  // the certificate issued; nil when refused
}

// certRecord is a row of the certificates table.
type certRecord struct {
	Serial    string // keys.SerialHex
	SID       string
	Profile   uint8
	Subject   string
	NotBefore time.Time
	NotAfter  time.Time
	Status    Status // StatusValid or StatusRevoked
	RevokedAt time.Time
	Reason    int

	// The accepted decision: the peer, and how it was authorized.
	Peer string
	Auth string // "none", "token" or "renewal"
	// Renews is the serial of the certificate this one renewed;
	// SupersededBy that of the certificate that renewed this one (set in the
	// transaction that revoked this one with reason superseded).
	Renews       string
	SupersededBy string

	DER []byte
}

// certColumns are the columns scanCert reads, in its order.
const certColumns = `serial, sid, profile, subject, not_before, not_after, status, revoked_at, reason,
	peer, auth, renews, superseded_by, der`

// scanCert reads a row of certColumns.
func scanCert(row interface{ Scan(...any) error }) (certRecord, error) {
	var (
		r                                     certRecord
		notBefore, notAfter                   string
		revokedAt, peer, renews, supersededBy sql.NullString
		reason                                sql.NullInt64
	)
	err := row.Scan(&r.Serial, &r.SID, &r.Profile, &r.Subject, &notBefore, &notAfter, &r.Status, &revokedAt, &reason,
		&peer, &r.Auth, &renews, &supersededBy, &r.DER)
	if err != nil {
		return r, err
	}
	if r.NotBefore, err = parseSQLTime(sql.NullString{String: notBefore, Valid: true}); err != nil {
		return r, err
	}
	if r.NotAfter, err = parseSQLTime(sql.NullString{String: notAfter, Valid: true}); err != nil {
		return r, err
	}
	if r.RevokedAt, err = parseSQLTime(revokedAt); err != nil {
		return r, err
	}
	r.Reason, r.Peer, r.Renews, r.SupersededBy = int(reason.Int64), peer.String, renews.String, supersededBy.String
	return r, nil
}

// getCert returns the row of the certificate with the serial serialHex, and
// whether there is one.
func getCert(tx *sql.Tx, serialHex string) (certRecord, bool, error) {
	r, err := scanCert(sqlstore.QueryRow(tx, getCertSQL, serialHex))
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("ca: read certificate %s: %w", serialHex, err)
	}
	return r, true, nil
}

// putRefusal appends d to the ring of stored refusals, and deletes those
// more than bound before it in the same transaction, so that the table never
// holds more than bound rows (MaxStoredRefusals; tests lower it).
func putRefusal(tx *sql.Tx, d decisionRecord, bound int) error {
	var seq int64
	err := sqlstore.QueryRow(tx, putRefusalSQL,
		sqlTime(d.Time), d.SID, nullString(d.Peer), d.Profile, d.Code, d.Reason).Scan(&seq)
	if err != nil {
		return fmt.Errorf("ca: store refusal: %w", err)
	}
	if seq > int64(bound) {
		if _, err := sqlstore.Exec(tx, trimRefusalsSQL, seq-int64(bound)); err != nil {
			return fmt.Errorf("ca: trim the refusals: %w", err)
		}
	}
	return nil
}

// decisionRecord is a row of the refusals table.
type decisionRecord struct {
	Time    time.Time
	SID     string
	Peer    string
	Profile uint8
	Code    wire.Code
	Reason  string
}

// Certificates returns every certificate the CA issued, oldest first.
func (a *Authority) Certificates() ([]CertRecord, error) {
	return listCertificates(a.db, a.now())
}

// listCertificates returns every certificate in db, oldest first (by
// notBefore, then serial), with its status as of now.
func listCertificates(db *sqlstore.DB, now time.Time) ([]CertRecord, error) {
	var out []CertRecord
	err := db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT ` + certColumns + ` FROM certificates ORDER BY not_before, length(serial), serial`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanCert(rows)
			if err != nil {
				return err
			}
			c, err := r.export(now)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("ca: list certificates: %w", err)
	}
	return out, nil
}

func (r *certRecord) export(now time.Time) (CertRecord, error) {
	serial, err := parseSerialHex(r.Serial)
	if err != nil {
		return CertRecord{}, err
	}
	status := r.Status
	if status == StatusValid && now.After(r.NotAfter) {
		status = StatusExpired
	}
	return CertRecord{
		Serial: serial, SID: r.SID, Profile: r.Profile, Subject: r.Subject,
		NotBefore: r.NotBefore, NotAfter: r.NotAfter, Status: status,
		RevokedAt: r.RevokedAt, Reason: r.Reason, DER: r.DER,
		Peer: r.Peer, Auth: r.Auth, Renews: optionalSerial(r.Renews), SupersededBy: optionalSerial(r.SupersededBy),
	}, nil
}

func parseSerialHex(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("ca: stored serial %q is not a positive hexadecimal number", s)
	}
	return n, nil
}

// optionalSerial parses a stored serial that may be absent (nil then, and for
// one that does not parse: the field is informational).
func optionalSerial(s string) *big.Int {
	if s == "" {
		return nil
	}
	n, err := parseSerialHex(s)
	if err != nil {
		return nil
	}
	return n
}

// Certificate returns the certificate with the given serial, and whether
// the CA issued it.
func (a *Authority) Certificate(serial *big.Int) (CertRecord, bool, error) {
	var r certRecord
	var found bool
	err := a.db.View(func(tx *sql.Tx) error {
		var err error
		r, found, err = getCert(tx, keys.SerialHex(serial))
		return err
	})
	if err != nil || !found {
		return CertRecord{}, false, err
	}
	c, err := r.export(a.now())
	return c, err == nil, err
}

// Refusals returns the most recent stored refusals, newest first: at most
// limit of them, or all (at most MaxStoredRefusals) when limit ≤ 0. Refusals
// of peers that proved nothing are not stored; AnonymousRefusals counts them.
func (a *Authority) Refusals(limit int) ([]Decision, error) {
	if limit <= 0 {
		limit = -1 // SQLite's "no limit"
	}
	var out []Decision
	err := a.db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT seq, time, sid, peer, profile, code, reason FROM refusals ORDER BY seq DESC LIMIT ?`, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				d          Decision
				when, peer sql.NullString
			)
			if err := rows.Scan(&d.Seq, &when, &d.SID, &peer, &d.Profile, &d.Code, &d.Reason); err != nil {
				return err
			}
			if d.Time, err = parseSQLTime(when); err != nil {
				return err
			}
			d.Peer = peer.String
			out = append(out, d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("ca: list refusals: %w", err)
	}
	return out, nil
}

// errSerialTaken reports the (astronomically unlikely) reuse of a random
// serial; Enroll draws another.
var errSerialTaken = errors.New("ca: serial number already issued")

// authName names an authorization kind in records and logs.
func authName(auth uint8) string {
	switch auth {
	case wire.AuthToken:
		return "token"
	case wire.AuthRenewal:
		return "renewal"
	}
	return "none"
}

// insertCert stores a newly issued certificate with the accepted decision
// (the request's peer and authorization, the serial it renews, the time it
// was issued); errSerialTaken if a certificate with its serial exists.
func insertCert(tx *sql.Tx, cert *x509.Certificate, req Request, renews string, now time.Time) error {
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	res, err := sqlstore.Exec(tx, insertCertSQL,
		keys.SerialHex(cert.SerialNumber), req.SID, req.Profile, cert.Subject.String(),
		sqlTime(cert.NotBefore), sqlTime(cert.NotAfter), authName(req.Auth), nullString(req.Peer), nullString(renews),
		spki[:], cert.Raw, sqlTime(now))
	if err != nil {
		return fmt.Errorf("ca: store certificate: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return errSerialTaken
	}
	return nil
}

// countCertificates returns how many certificates the store holds.
func (a *Authority) countCertificates() (int, error) {
	n := 0
	err := a.db.View(func(tx *sql.Tx) error {
		return tx.QueryRow(`SELECT count(*) FROM certificates`).Scan(&n)
	})
	return n, err
}
