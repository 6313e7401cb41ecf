package ca

import (
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// CRLReason codes (RFC 5280 §5.3.1). 7 is not used.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonRemoveFromCRL        = 8
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

var reasonNames = map[int]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonRemoveFromCRL:        "removeFromCRL",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

// ReasonName returns the RFC 5280 name of a CRLReason code, such as
// "keyCompromise", or "reason(N)" for a code RFC 5280 does not define.
func ReasonName(r int) string {
	if name, ok := reasonNames[r]; ok {
		return name
	}
	return fmt.Sprintf("reason(%d)", r)
}

// normalizeReason folds case and drops '-', '_' and spaces, so that
// "keyCompromise", "key-compromise" and "KEY_COMPROMISE" are one name.
func normalizeReason(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', ' ':
			return -1
		}
		return r
	}, strings.ToLower(s))
}

// ParseReason parses a CRLReason given by its RFC 5280 name, in any case
// and with or without '-' or '_' between the words ("keyCompromise",
// "key-compromise", "superseded"), or by its number. 7 and numbers outside
// 0..10 are refused.
func ParseReason(s string) (int, error) {
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		if _, ok := reasonNames[n]; ok {
			return n, nil
		}
		return 0, fmt.Errorf("ca: %d is not an RFC 5280 revocation reason (0 to 10, without 7)", n)
	}
	want := normalizeReason(s)
	for code, name := range reasonNames {
		if normalizeReason(name) == want {
			return code, nil
		}
	}
	return 0, fmt.Errorf("ca: %q is not a revocation reason; use one of %s", s, strings.Join(AcceptedReasons(), ", "))
}

// ParseAcceptedReason is ParseReason for a revocation to be made here: it
// also refuses the reasons pkiboard does not honour (see AcceptedReasons).
func ParseAcceptedReason(s string) (int, error) {
	code, err := ParseReason(s)
	if err != nil {
		return 0, err
	}
	return code, checkRevocationReason(code)
}

// AcceptedReasons returns the names of the reasons a revocation may give:
// RFC 5280's, without the ones checkRevocationReason refuses.
func AcceptedReasons() []string {
	var names []string
	for _, code := range slices.Sorted(maps.Keys(reasonNames)) {
		if checkRevocationReason(code) == nil {
			names = append(names, reasonNames[code])
		}
	}
	return names
}

// checkRevocationReason refuses the reasons pkiboard cannot honour:
// certificateHold (a hold is meant to be released, and pkiboard revocations
// are permanent) and removeFromCRL (only meaningful in delta CRLs).
func checkRevocationReason(r int) error {
	switch r {
	case ReasonCertificateHold:
		return errors.New("ca: certificateHold is not supported: a revocation cannot be undone; use another reason")
	case ReasonRemoveFromCRL:
		return errors.New("ca: removeFromCRL is only for delta CRLs, which pkiboard does not issue")
	}
	if _, ok := reasonNames[r]; !ok {
		return fmt.Errorf("ca: %d is not an RFC 5280 revocation reason", r)
	}
	return nil
}

// RevokeAckWait is how long Revoke and RevokeSID wait for the boards watching
// (PROTOCOL.md §4.4) to acknowledge the new CRL.
const RevokeAckWait = 2 * time.Second

// tendInterval is how often Run looks at the CRL.
const tendInterval = 10 * time.Second

// Revocation is what Revoke or RevokeSID did.
type Revocation struct {
	Revoked int         // certificates revoked; 0 leaves the CRL as it was
	CRL     Publication // the CRL that lists them, when Revoked > 0
}

// Publication is what became of a new CRL.
type Publication struct {
	Number uint64 // its CRL number
	// SaveErr is nil when crl.pem holds the CRL, else why it does not: the CA
	// serves the new CRL all the same, from memory, and writes crl.pem again
	// later (Run, CRLPEM).
	SaveErr error
	// Watching is the number of boards watching when the CRL was pushed, and
	// Installed the number of them that acknowledged it within RevokeAckWait.
	Watching, Installed int
}

// Revoke revokes the certificate with the given serial for reason (a
// CRLReason code, see ParseReason), publishes a new CRL at once — served from
// then on, written to crl.pem, pushed to every board watching — and waits up
// to RevokeAckWait for the boards watching to install it (or until ctx is
// done). An unknown serial, or a certificate already revoked, is an error.
func (a *Authority) Revoke(ctx context.Context, serial *big.Int, reason int) (Revocation, error) {
	if serial == nil || serial.Sign() <= 0 {
		return Revocation{}, errors.New("ca: revoke: a serial number is positive")
	}
	serialHex := keys.SerialHex(serial)
	return a.revoke(ctx, reason, func(tx *sql.Tx, now time.Time) ([]string, error) {
		rec, found, err := getCert(tx, serialHex)
		switch {
		case err != nil:
			return nil, err
		case !found:
			return nil, fmt.Errorf("no certificate with serial %s was issued by this CA", serialHex)
		case rec.Status == StatusRevoked:
			return nil, fmt.Errorf("certificate %s (SID %q) was already revoked at %s (%s)",
				rec.Serial, rec.SID, rec.RevokedAt.Format(timeLayout), ReasonName(rec.Reason))
		}
		return []string{serialHex}, nil
	})
}

// RevokeSID revokes every certificate of sid that is neither revoked nor
// expired and, if it revoked any, publishes a new CRL and waits for the boards
// as Revoke does. A SID the CA never issued to is an error.
func (a *Authority) RevokeSID(ctx context.Context, sid string, reason int) (Revocation, error) {
	return a.revoke(ctx, reason, func(tx *sql.Tx, now time.Time) ([]string, error) {
		var issued int
		if err := tx.QueryRow(`SELECT count(*) FROM certificates WHERE sid = ?`, sid).Scan(&issued); err != nil {
			return nil, err
		}
		if issued == 0 {
			return nil, fmt.Errorf("no certificate was issued to SID %q", sid)
		}
		rows, err := tx.Query(`SELECT serial FROM certificates WHERE sid = ? AND status = 'valid' AND not_after > ?
			ORDER BY length(serial), serial`, sid, sqlTime(now))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var pick []string
		for rows.Next() {
			var serial string
			if err := rows.Scan(&serial); err != nil {
				return nil, err
			}
			pick = append(pick, serial)
		}
		return pick, rows.Err()
	})
}

// revoke runs revokeLocked and then waits for the boards watching to
// install the new CRL.
func (a *Authority) revoke(ctx context.Context, reason int, pick func(*sql.Tx, time.Time) ([]string, error)) (Revocation, error) {
	if err := checkRevocationReason(reason); err != nil {
		return Revocation{}, err
	}
	a.crlMu.Lock()
	res, watching, err := a.revokeLocked(reason, pick)
	a.crlMu.Unlock()
	if err != nil || len(watching) == 0 {
		return res, err
	}
	res.CRL.Installed = a.waitInstalled(ctx, watching, res.CRL.Number)
	a.log.Info("watching boards installed the CRL", zap.Uint64("number", res.CRL.Number),
		zap.Int("installed", res.CRL.Installed), zap.Int("watching", res.CRL.Watching))
	return res, nil
}

// revokeLocked marks the certificates pick chooses as revoked and, if there
// were any, takes the next CRL number and the CRL's entries, all in one
// durable transaction; then it publishes the new CRL. a.crlMu is held.
func (a *Authority) revokeLocked(reason int, pick func(*sql.Tx, time.Time) ([]string, error)) (Revocation, []*watch, error) {
	now := a.now()
	var (
		revoked []certRecord
		number  *big.Int
		entries []x509.RevocationListEntry
	)
	err := a.db.Update(func(tx *sql.Tx) error {
		serials, err := pick(tx, now)
		if err != nil {
			return err
		}
		for _, serial := range serials {
			rec, err := scanCert(tx.QueryRow(`UPDATE certificates SET status = 'revoked', revoked_at = ?, reason = ?
				WHERE serial = ? AND status = 'valid' RETURNING `+certColumns, sqlTime(now), reason, serial))
			if err != nil {
				return fmt.Errorf("revoke certificate %s: %w", serial, err)
			}
			revoked = append(revoked, rec)
		}
		if len(revoked) == 0 {
			return nil
		}
		number, entries, err = nextCRL(tx, now)
		return err
	})
	if err != nil {
		return Revocation{}, nil, fmt.Errorf("ca: revoke: %w", err)
	}
	for _, rec := range revoked {
		a.log.Info("certificate revoked", zap.String("sid", rec.SID), zap.String("serial", rec.Serial),
			zap.String("reason", ReasonName(reason)))
	}
	res := Revocation{Revoked: len(revoked)}
	if len(revoked) == 0 {
		return res, nil, nil
	}
	a.crlDirty = true
	watching, err := a.publishCRL(number, entries, now)
	if err != nil {
		return res, nil, fmt.Errorf("ca: %d certificates revoked, but the new CRL could not be issued (the CA tries again within %s): %w", len(revoked), tendInterval, err)
	}
	res.CRL = Publication{Number: number.Uint64(), SaveErr: a.crlSave, Watching: len(watching)}
	return res, watching, nil
}

// nextCRL takes the next CRL number and lists the revocations the CRL
// issued now must carry.
func nextCRL(tx *sql.Tx, now time.Time) (*big.Int, []x509.RevocationListEntry, error) {
	var n int64
	if err := tx.QueryRow(`UPDATE crl SET number = number + 1 WHERE id = 1 RETURNING number`).Scan(&n); err != nil {
		return nil, nil, fmt.Errorf("ca: take a CRL number: %w", err)
	}
	entries, err := crlEntries(tx, now)
	if err != nil {
		return nil, nil, err
	}
	return big.NewInt(n), entries, nil
}

// crlEntries lists the revocations a CRL issued now carries. A student
// certificate's entry is left out once the certificate has expired, as RFC
// 5280 §3.3 allows; a board certificate's is kept for good (PROTOCOL.md §4.3),
// so that a board key compromised after its certificate expired cannot
// backdate receipts.
func crlEntries(tx *sql.Tx, now time.Time) ([]x509.RevocationListEntry, error) {
	rows, err := tx.Query(`SELECT serial, revoked_at, reason FROM certificates
		WHERE status = 'revoked' AND (profile = ? OR not_after >= ?)
		ORDER BY length(serial), serial`, wire.ProfileBoard, sqlTime(now))
	if err != nil {
		return nil, fmt.Errorf("ca: read revocations: %w", err)
	}
	defer rows.Close()
	var entries []x509.RevocationListEntry
	for rows.Next() {
		var (
			serial    string
			revokedAt sql.NullString
			reason    int
		)
		if err := rows.Scan(&serial, &revokedAt, &reason); err != nil {
			return nil, fmt.Errorf("ca: read revocations: %w", err)
		}
		n, err := parseSerialHex(serial)
		if err != nil {
			return nil, err
		}
		at, err := parseSQLTime(revokedAt)
		if err != nil {
			return nil, err
		}
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   n,
			RevocationTime: at,
			// CreateRevocationList omits the reasonCode extension for 0
			// (unspecified), as RFC 5280 §5.3.1 recommends.
			ReasonCode: reason,
		})
	}
	return entries, rows.Err()
}

// publishCRL signs a CRL with the given number and entries and checks it;
// then it installs it in memory, so that from this moment the CA serves it
// (whatever becomes of the disk, what the CA serves never lags what its store
// says is revoked); then it writes crl.pem durably — a failure is kept in
// a.crlSave, and Run and CRLPEM write again — and pushes the CRL to every
// board watching, which it returns. a.crlMu is held.
func (a *Authority) publishCRL(number *big.Int, entries []x509.RevocationListEntry, now time.Time) ([]*watch, error) {
	der, err := x509.CreateRevocationList(a.o.Rand, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(a.o.CRLValidity),
		RevokedCertificateEntries: entries,
		SignatureAlgorithm:        a.sigAlg,
	}, a.root, a.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign CRL: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse the new CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(a.root); err != nil {
		return nil, fmt.Errorf("ca: the new CRL does not verify: %w", err)
	}
	a.crl, a.crlPEM, a.crlDirty = crl, keys.EncodeCRLPEM(der), false
	clear(a.statuses) // each names the previous CRL
	a.log.Info("CRL issued", zap.String("number", number.String()), zap.Int("entries", len(entries)),
		zap.Time("next_update", crl.NextUpdate))
	a.crlSave = nil
	a.saveCRL()
	return a.pushCRL(), nil
}

// saveCRL writes the CRL served to crl.pem, if it is not there yet, and keeps
// in a.crlSave why it could not. It logs the first failure and the recovery,
// not every retry. a.crlMu is held.
func (a *Authority) saveCRL() {
	failing := a.crlSave != nil
	err := durable.WriteFile(a.path(CRLFile), a.crlPEM, 0o644)
	switch {
	case err != nil && !failing:
		a.crlSave = fmt.Errorf("ca: write %s: %w", CRLFile, err)
		a.log.Error("the new CRL is issued and served, but crl.pem could not be written (is ca.data_dir full?); retrying",
			zap.String("number", a.crl.Number.String()), zap.Error(err))
	case err != nil:
		a.crlSave = fmt.Errorf("ca: write %s: %w", CRLFile, err)
	case failing:
		a.crlSave = nil
		a.log.Info("crl.pem written", zap.String("number", a.crl.Number.String()))
	}
}

// issueCRL takes a new CRL number and publishes a fresh CRL. a.crlMu is held.
func (a *Authority) issueCRL(now time.Time) error {
	var (
		number  *big.Int
		entries []x509.RevocationListEntry
	)
	err := a.db.Update(func(tx *sql.Tx) error {
		var err error
		number, entries, err = nextCRL(tx, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("ca: take a CRL number: %w", err)
	}
	_, err = a.publishCRL(number, entries, now)
	return err
}

// stale reports whether the current CRL is past half its validity.
func (a *Authority) stale(now time.Time) bool {
	half := a.crl.NextUpdate.Sub(a.crl.ThisUpdate) / 2
	return !now.Before(a.crl.ThisUpdate.Add(half))
}

// CRLPEM returns the current CRL in PEM ("X509 CRL"), as crl.pem holds it
// once it could be written. A CRL past half its validity, or one that misses
// a revocation, is replaced first; if that fails while the old one is still
// within its nextUpdate, the old one is returned and the failure logged. The
// caller must not modify the slice.
func (a *Authority) CRLPEM() ([]byte, error) {
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	now := a.now()
	if a.crl != nil && !a.crlDirty && !a.stale(now) {
		if a.crlSave != nil {
			a.saveCRL()
		}
		return a.crlPEM, nil
	}
	err := a.issueCRL(now)
	if err == nil {
		return a.crlPEM, nil
	}
	if a.crl != nil && now.Before(a.crl.NextUpdate) {
		a.log.Error("cannot issue a new CRL; serving the previous one", zap.Error(err))
		return a.crlPEM, nil
	}
	return nil, err
}

// CRLNumber returns the number of the CRL the CA serves.
func (a *Authority) CRLNumber() uint64 {
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	if a.crl == nil {
		return 0
	}
	return a.crl.Number.Uint64()
}

// Run keeps the CRL current until ctx is cancelled, and then returns: it
// issues a new CRL — pushed to the boards watching — once the current one is
// half-way to its nextUpdate or misses a revocation, and writes crl.pem again
// after a failed write.
func (a *Authority) Run(ctx context.Context) {
	t := time.NewTicker(tendInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.tend()
		}
	}
}

// tend is one look of Run's.
func (a *Authority) tend() {
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	now := a.now()
	switch {
	case a.crl == nil || a.crlDirty || a.stale(now):
		if err := a.issueCRL(now); err != nil {
			a.log.Error("cannot issue a new CRL; retrying", zap.Error(err), zap.Duration("in", tendInterval))
		}
	case a.crlSave != nil:
		a.saveCRL()
	}
}

// loadCRL reads crl.pem at Open. It issues a new CRL when there is none, or
// the file does not verify against the root, is past half its validity, or
// does not list exactly the revocations in the store (a crash between a
// revocation and its CRL). The stored CRL number is raised past the file's
// if needed, so numbers keep increasing even with a store restored from an
// older backup.
func (a *Authority) loadCRL() error {
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	now := a.now()
	path := a.path(CRLFile)
	data, err := os.ReadFile(path)
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("ca: read CRL: %w", err)
	}
	if data != nil {
		crl, err := keys.ParseCRLPEM(data)
		if err == nil {
			err = crl.CheckSignatureFrom(a.root)
		}
		if err != nil {
			a.log.Warn("crl.pem is not a CRL of this root; issuing a new one", zap.String("file", path), zap.Error(err))
		} else {
			a.crl, a.crlPEM = crl, data
			if err := a.raiseCRLNumber(crl.Number); err != nil {
				return err
			}
			same, err := a.crlMatchesStore(crl, now)
			if err != nil {
				return err
			}
			a.crlDirty = !same
		}
	}
	if a.crl != nil && !a.crlDirty && !a.stale(now) {
		return nil
	}
	if err := a.issueCRL(now); err != nil {
		return err
	}
	// At Open, a CRL that cannot be written is an error: the disk is not fit
	// to start on.
	return a.crlSave
}

// raiseCRLNumber makes the stored CRL number at least n.
func (a *Authority) raiseCRLNumber(n *big.Int) error {
	if n == nil || n.Sign() < 0 {
		return nil
	}
	if !n.IsInt64() {
		return fmt.Errorf("ca: %s has CRL number %s, beyond what this CA ever numbers; move it away and start the CA again, which issues a new CRL", CRLFile, n)
	}
	err := a.db.Update(func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE crl SET number = ? WHERE id = 1 AND number < ?`, n.Int64(), n.Int64())
		return err
	})
	if err != nil {
		return fmt.Errorf("ca: store CRL number: %w", err)
	}
	return nil
}

// crlMatchesStore reports whether crl lists exactly the revocations a CRL
// issued now would list.
func (a *Authority) crlMatchesStore(crl *x509.RevocationList, now time.Time) (bool, error) {
	var want []x509.RevocationListEntry
	err := a.db.View(func(tx *sql.Tx) error {
		var err error
		want, err = crlEntries(tx, now)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("ca: read revocations: %w", err)
	}
	have := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		have[e.SerialNumber.String()] = true
	}
	if len(have) != len(want) {
		return false, nil
	}
	for _, e := range want {
		if !have[e.SerialNumber.String()] {
			return false, nil
		}
	}
	return true, nil
}

// ParseCRL parses a CRL in DER, as a StatusUpdate carries it, and checks it as
// ParseCRLPEM does: signed by root, and numbered.
func ParseCRL(der []byte, root *x509.Certificate) (*x509.RevocationList, error) {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parse CRL: %w", err)
	}
	return checkCRL(crl, root)
}

// checkCRL checks that crl is signed by root and carries a CRL number.
func checkCRL(crl *x509.RevocationList, root *x509.Certificate) (*x509.RevocationList, error) {
	if err := crl.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("the CRL is not signed by the root: %w", err)
	}
	// RFC 5280 §5.2.3: a CA must number its CRLs. The number is how a holder
	// tells a newer CRL from an older one, so a CRL without one is refused.
	if crl.Number == nil {
		return nil, errors.New("the CRL has no CRL number (RFC 5280 §5.2.3); refusing it")
	}
	return crl, nil
}

// CRLInfo returns the number, thisUpdate and nextUpdate of the CRL the CA
// serves; ok is false before the first is issued.
func (a *Authority) CRLInfo() (number uint64, thisUpdate, nextUpdate time.Time, ok bool) {
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	if a.crl == nil {
		return 0, time.Time{}, time.Time{}, false
	}
	return a.crl.Number.Uint64(), a.crl.ThisUpdate, a.crl.NextUpdate, true
}
