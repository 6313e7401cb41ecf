package ca

import (
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"time"

	"pkiboard/internal/sqlstore"
)

// sqlTimeGlob is the pattern every time stored in ca.db matches: RFC 3339 in
// UTC, whole seconds, as sqlTime writes it. One format for every time keeps
// plain string comparison in time order, and lets sqlite3's date functions
// read them (strftime('%Y-%m-%dT%H:%M:%SZ', 'now') writes the same format).
const sqlTimeGlob = `'[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z'`

// schemaV1 is ca.db at schema version 1 (PRAGMA user_version 1): the tables
// the package comment describes. Serials are lowercase hexadecimal of the
// serial's big-endian bytes (keys.SerialHex), so that every listing, log and
// query spells a certificate alike; ordering by (length(serial), serial) is
// numeric order. The CHECK constraints hold the rules the code relies on, so
// that a row written by hand (sqlite3) cannot break them either.
const schemaV1 = `
CREATE TABLE certificates (
	serial        TEXT PRIMARY KEY
	              CHECK (length(serial) BETWEEN 2 AND 40 AND length(serial) % 2 = 0
	                     AND serial NOT GLOB '*[^0-9a-f]*' AND serial NOT GLOB '00*'),
	sid           TEXT NOT NULL CHECK (length(sid) BETWEEN 1 AND 64),
	profile       INTEGER NOT NULL CHECK (profile IN (1, 2)),   -- 1 student, 2 board
	subject       TEXT NOT NULL,
	not_before    TEXT NOT NULL CHECK (not_before GLOB ` + sqlTimeGlob + `),
	not_after     TEXT NOT NULL CHECK (not_after GLOB ` + sqlTimeGlob + ` AND not_after > not_before),
	status        TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),  -- expired: valid and not_after in the past
	revoked_at    TEXT CHECK (revoked_at GLOB ` + sqlTimeGlob + `),
	reason        INTEGER CHECK (reason BETWEEN 0 AND 10 AND reason <> 7),  -- RFC 5280 CRLReason
	auth          TEXT NOT NULL CHECK (auth IN ('none', 'token', 'renewal')),
	peer          TEXT,                                          -- the client's address
	renews        TEXT REFERENCES certificates (serial),         -- the certificate this one renewed
	superseded_by TEXT REFERENCES certificates (serial),         -- the certificate that renewed this one
	spki_sha256   BLOB NOT NULL CHECK (typeof(spki_sha256) = 'blob' AND length(spki_sha256) = 32),
	der           BLOB NOT NULL CHECK (typeof(der) = 'blob' AND length(der) > 0),
	issued        TEXT NOT NULL CHECK (issued GLOB ` + sqlTimeGlob + `),  -- when the CA accepted the request
	CHECK ((status = 'valid' AND revoked_at IS NULL AND reason IS NULL)
	    OR (status = 'revoked' AND revoked_at IS NOT NULL AND reason IS NOT NULL)),
	CHECK ((auth = 'renewal') = (renews IS NOT NULL)),
	CHECK (superseded_by IS NULL OR (status = 'revoked' AND reason = 4))
);
CREATE INDEX certificates_sid ON certificates (sid);
-- What a CRL lists: the revoked certificates, found without reading the others.
CREATE INDEX certificates_revoked ON certificates (serial) WHERE status = 'revoked';

-- Only the Ed25519 public key derived from a token is stored: a stolen ca.db
-- enrolls nobody.
CREATE TABLE tokens (
	public_key BLOB PRIMARY KEY CHECK (typeof(public_key) = 'blob' AND length(public_key) = 32),
	sid        TEXT NOT NULL CHECK (length(sid) BETWEEN 1 AND 64),
	profile    INTEGER NOT NULL CHECK (profile IN (1, 2)),
	created    TEXT NOT NULL CHECK (created GLOB ` + sqlTimeGlob + `),
	expires    TEXT NOT NULL CHECK (expires GLOB ` + sqlTimeGlob + ` AND expires >= created),
	used_at    TEXT CHECK (used_at GLOB ` + sqlTimeGlob + `),
	serial     TEXT REFERENCES certificates (serial),            -- the certificate it was spent on
	cancelled  TEXT CHECK (cancelled GLOB ` + sqlTimeGlob + `),
	CHECK ((used_at IS NULL) = (serial IS NULL))
);
CREATE INDEX tokens_sid ON tokens (sid);

-- The last refusals of peers that proved possession of a token's or a
-- certificate's key (10,000; older ones are deleted in the transaction that
-- adds one). Refusals of peers that proved nothing are never stored.
CREATE TABLE refusals (
	seq     INTEGER PRIMARY KEY,
	time    TEXT NOT NULL CHECK (time GLOB ` + sqlTimeGlob + `),
	sid     TEXT NOT NULL CHECK (length(sid) <= 64),
	peer    TEXT,
	profile INTEGER NOT NULL CHECK (profile IN (1, 2)),
	code    INTEGER NOT NULL CHECK (code BETWEEN 1 AND 65535),  -- PROTOCOL.md §6's code
	reason  TEXT NOT NULL                                      -- the sentence the client got
);

-- The number of the last CRL issued: one row, always there.
CREATE TABLE crl (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	number INTEGER NOT NULL CHECK (number >= 0)
);
INSERT INTO crl (id, number) VALUES (1, 0);
`

// migrations bring ca.db from an empty file to the schema this package
// reads and writes.
var migrations = []sqlstore.Migration{
	{Name: "the CA's tables: certificates, tokens, refusals, crl", SQL: schemaV1},
	{Name: "the audit of staff actions", SQL: schemaAudit},
}

// schemaAudit is migration 2: the audit of what staff do from the console
// (logins, revocations, token cancels), append-only.
const schemaAudit = `
CREATE TABLE audit (
	seq    INTEGER PRIMARY KEY CHECK (seq > 0),
	time   TEXT    NOT NULL CHECK (time GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z'),
	actor  TEXT    NOT NULL CHECK (length(actor) BETWEEN 1 AND 255),
	action TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
	detail TEXT    NOT NULL
) STRICT;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
`

// Audit records a staff action in ca.db's audit table: actor is who did it
// (the console session's name), action a short name, detail what was done.
func (a *Authority) Audit(actor, action, detail string) error {
	if actor == "" || len(actor) > 255 {
		return fmt.Errorf("ca: audit: the actor %q is not 1 to 255 bytes", actor)
	}
	at := a.now().UTC().Format(sqlTimeLayout)
	return a.db.Update(func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO audit (time, actor, action, detail) VALUES (?, ?, ?, ?)`, at, actor, action, detail)
		return err
	})
}

// The statements of an enrollment, prepared once (sqlstore.Options.Prepared):
// compiling their text anew each time cost a sixth of the CA's CPU under load.
const (
	getTokenSQL   = `SELECT sid, profile, created, expires, used_at, serial, cancelled FROM tokens WHERE public_key = ?`
	spendTokenSQL = `UPDATE tokens SET used_at = ?, serial = ? WHERE public_key = ? AND used_at IS NULL`
	getCertSQL    = `SELECT ` + certColumns + ` FROM certificates WHERE serial = ?`
	insertCertSQL = `INSERT INTO certificates
		(serial, sid, profile, subject, not_before, not_after, status, auth, peer, renews, spki_sha256, der, issued)
		VALUES (?, ?, ?, ?, ?, ?, 'valid', ?, ?, ?, ?, ?, ?)
		ON CONFLICT (serial) DO NOTHING`
	putRefusalSQL   = `INSERT INTO refusals (time, sid, peer, profile, code, reason) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`
	trimRefusalsSQL = `DELETE FROM refusals WHERE seq <= ?`
)

var preparedSQL = []string{getTokenSQL, spendTokenSQL, getCertSQL, insertCertSQL, putRefusalSQL, trimRefusalsSQL}

// DB returns the CA's database, for the daemon's commit metrics
// (sqlstore.DB.Observe) and readiness (sqlstore.DB.CheckWritable).
func (a *Authority) DB() *sqlstore.DB { return a.db }

// sqlTimeLayout is the layout of the times in ca.db (see sqlTimeGlob).
const sqlTimeLayout = "2006-01-02T15:04:05Z"

// sqlTime returns t as ca.db stores it.
func sqlTime(t time.Time) string { return t.UTC().Format(sqlTimeLayout) }

// nullString returns s, or NULL for "".
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// parseSQLTime reads a time ca.db stored; NULL is the zero time.
func parseSQLTime(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	t, err := time.Parse(sqlTimeLayout, s.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("ca: stored time %q is not RFC 3339 in UTC", s.String)
	}
	return t, nil
}

// ErrOlderStore matches the error of Open and OpenRecords for a ca.db that an
// older pkiboard wrote (a bbolt file): this pkiboard cannot read or convert it.
var ErrOlderStore = errors.New("store of an older pkiboard")

// refuseOlderStore refuses a ca.db written by a pkiboard before the store
// moved to SQLite, with a sentence that says what to do. There are no
// deployments to convert: a new CA is the way on.
func refuseOlderStore(path string) error {
	old, err := sqlstore.IsBbolt(path)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if !old {
		return nil
	}
	return fmt.Errorf("ca: %s is the store of an older pkiboard (a bbolt file, from before the CA kept its records in SQLite), which this pkiboard cannot read or convert: "+
		"start a new CA in an empty data directory (every student and the board then enroll again), or run the pkiboard that wrote it: %w", path, ErrOlderStore)
}

// openStore opens ca.db in dir, bringing its schema up to date, or, with
// readOnly, opens it for reading only without the lock, while the CA may be
// writing it.
func openStore(dir string, readOnly bool) (*sqlstore.DB, error) {
	path := filepath.Join(dir, DBFile)
	if err := refuseOlderStore(path); err != nil {
		return nil, err
	}
	db, err := sqlstore.Open(path, sqlstore.Options{Migrations: migrations, ReadOnly: readOnly, Prepared: preparedSQL})
	switch {
	case errors.Is(err, sqlstore.ErrNotDatabase):
		return nil, fmt.Errorf("ca: %w (if it is the store of an older pkiboard, start a new CA in an empty data directory instead)", err)
	case err != nil:
		return nil, fmt.Errorf("ca: %w", err)
	}
	return db, nil
}

// Records is the CA's store opened for reading only: what `pkiboard certs`
// lists. It takes no lock, so it reads while the CA runs (each call sees what
// the CA had committed when it began), needs no root key, and writes nothing.
// Its methods are safe for concurrent use.
type Records struct {
	db  *sqlstore.DB
	now func() time.Time
}

// OpenRecords opens the store of the CA in dir for reading. now is the clock
// that tells expired certificates from valid ones (time.Now if nil). A
// directory that holds no CA is ErrNoCA, as for Open without Options.Create;
// OpenRecords creates nothing.
func OpenRecords(dir string, now func() time.Time) (*Records, error) {
	if err := checkExists(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, DBFile)
	if ok, err := fileExists(path); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("ca: %s holds a root but no %s; start the CA once with `pkiboard --role=ca`, which creates it", dir, DBFile)
	}
	db, err := openStore(dir, true)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Records{db: db, now: now}, nil
}

// Certificates returns every certificate the CA issued, oldest first, with
// its status as of now.
func (r *Records) Certificates() ([]CertRecord, error) {
	return listCertificates(r.db, r.now().UTC().Truncate(time.Second))
}

// CRLMissing returns the serials of the certificates a CRL issued now would
// list and crl does not: revocations the CA has stored but not yet published
// in crl (the CA issues a CRL that lists them as soon as it can, when it
// runs).
func (r *Records) CRLMissing(crl *x509.RevocationList) ([]*big.Int, error) {
	var missing []*big.Int
	err := r.db.View(func(tx *sql.Tx) error {
		want, err := crlEntries(tx, r.now().UTC().Truncate(time.Second))
		if err != nil {
			return err
		}
		have := make(map[string]bool, len(crl.RevokedCertificateEntries))
		for _, e := range crl.RevokedCertificateEntries {
			have[string(e.SerialNumber.Bytes())] = true
		}
		for _, e := range want {
			if !have[string(e.SerialNumber.Bytes())] {
				missing = append(missing, e.SerialNumber)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ca: read revocations: %w", err)
	}
	return missing, nil
}

// Close closes the store.
func (r *Records) Close() error { return r.db.Close() }
