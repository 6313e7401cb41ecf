package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
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
	var names []string
	for _, code := range slices.Sorted(maps.Keys(reasonNames)) {
		names = append(names, reasonNames[code])
	}
	return 0, fmt.Errorf("ca: %q is not a revocation reason; use one of %s", s, strings.Join(names, ", "))
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

// Revoke revokes the certificate with the given serial for reason (a
// CRLReason code, see ParseReason) and publishes a new CRL at once. An
// unknown serial, or a certificate already revoked, is an error.
func (a *Authority) Revoke(serial *big.Int, reason int) error {
	if serial == nil || serial.Sign() <= 0 {
		return errors.New("ca: revoke: a serial number is positive")
	}
	key := serial.Bytes()
	_, err := a.revoke(reason, func(tx *bolt.Tx, now time.Time) ([][]byte, error) {
		var rec certRecord
		found, err := getJSON(tx.Bucket(bucketCerts), key, &rec)
		switch {
		case err != nil:
			return nil, err
		case !found:
			return nil, fmt.Errorf("no certificate with serial %s was issued by this CA", keys.SerialHex(serial))
		case rec.Status == StatusRevoked:
			return nil, fmt.Errorf("certificate %s (SID %q) was already revoked at %s (%s)",
				storedSerial(rec.Serial), rec.SID, rec.RevokedAt.Format(timeLayout), ReasonName(rec.Reason))
		}
		return [][]byte{key}, nil
	})
	return err
}

// RevokeSID revokes every certificate of sid that is neither revoked nor
// expired, publishes a new CRL if it revoked any, and returns how many it
// revoked. A SID the CA never issued to is an error.
func (a *Authority) RevokeSID(sid string, reason int) (int, error) {
	return a.revoke(reason, func(tx *bolt.Tx, now time.Time) ([][]byte, error) {
		prefix := sidKey(sid, nil)
		certs := tx.Bucket(bucketCerts)
		var pick [][]byte
		issued := 0
		c := tx.Bucket(bucketCertsBySID).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			issued++
			key := bytes.Clone(k[len(prefix):])
			var rec certRecord
			found, err := getJSON(certs, key, &rec)
			if err != nil {
				return nil, err
			}
			if found && rec.Status == StatusValid && now.Before(rec.NotAfter) {
				pick = append(pick, key)
			}
		}
		if issued == 0 {
			return nil, fmt.Errorf("no certificate was issued to SID %q", sid)
		}
		return pick, nil
	})
}

// revoke marks the certificates pick chooses as revoked and, if there were
// any, takes the next CRL number and the CRL's entries, all in one durable
// transaction; then it signs and writes the new CRL.
func (a *Authority) revoke(reason int, pick func(*bolt.Tx, time.Time) ([][]byte, error)) (int, error) {
	if err := checkRevocationReason(reason); err != nil {
		return 0, err
	}
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	now := a.now()
	var (
		revoked []certRecord // set only by the last run of fn
		number  *big.Int
		entries []x509.RevocationListEntry
	)
	err := a.db.Update(func(tx *bolt.Tx) error {
		revoked, number, entries = nil, nil, nil
		keys, err := pick(tx, now)
		if err != nil {
			return err
		}
		certs, index := tx.Bucket(bucketCerts), tx.Bucket(bucketRevoked)
		for _, key := range keys {
			var rec certRecord
			if _, err := getJSON(certs, key, &rec); err != nil {
				return err
			}
			rec.Status, rec.RevokedAt, rec.Reason = StatusRevoked, now, reason
			if err := putJSON(certs, key, rec); err != nil {
				return err
			}
			if err := putJSON(index, key, revokedRecord{RevokedAt: now, Reason: reason, NotAfter: rec.NotAfter}); err != nil {
				return err
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
		return 0, fmt.Errorf("ca: revoke: %w", err)
	}
	for _, rec := range revoked {
		a.log.Info("certificate revoked", zap.String("sid", rec.SID), zap.String("serial", storedSerial(rec.Serial)),
			zap.String("reason", ReasonName(reason)))
	}
	if len(revoked) == 0 {
		return 0, nil
	}
	a.crlDirty = true
	if err := a.writeCRL(number, entries, now); err != nil {
		return len(revoked), fmt.Errorf("ca: %d certificates revoked, but the new CRL was not written (the next CRL request tries again): %w", len(revoked), err)
	}
	return len(revoked), nil
}

// nextCRL takes the next CRL number and lists the revocations the CRL
// issued now must carry. Entries of certificates past their notAfter are
// left out, as RFC 5280 §3.3 allows.
func nextCRL(tx *bolt.Tx, now time.Time) (*big.Int, []x509.RevocationListEntry, error) {
	meta := tx.Bucket(bucketMeta)
	var n uint64
	if v := meta.Get(metaCRLNumber); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	n++
	if err := meta.Put(metaCRLNumber, binary.BigEndian.AppendUint64(nil, n)); err != nil {
		return nil, nil, err
	}
	entries, err := crlEntries(tx, now)
	if err != nil {
		return nil, nil, err
	}
	return new(big.Int).SetUint64(n), entries, nil
}

func crlEntries(tx *bolt.Tx, now time.Time) ([]x509.RevocationListEntry, error) {
	var entries []x509.RevocationListEntry
	err := tx.Bucket(bucketRevoked).ForEach(func(k, v []byte) error {
		var r revokedRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("ca: corrupt revocation record %x: %w", k, err)
		}
		if now.After(r.NotAfter) {
			return nil
		}
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   new(big.Int).SetBytes(k),
			RevocationTime: r.RevokedAt,
			// CreateRevocationList omits the reasonCode extension for 0
			// (unspecified), as RFC 5280 §5.3.1 recommends.
			ReasonCode: r.Reason,
		})
		return nil
	})
	return entries, err
}

// writeCRL signs a CRL with the given number and entries, checks it, and
// writes it to crl.pem atomically. a.crlMu is held.
func (a *Authority) writeCRL(number *big.Int, entries []x509.RevocationListEntry, now time.Time) error {
	der, err := x509.CreateRevocationList(a.o.Rand, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(a.o.CRLValidity),
		RevokedCertificateEntries: entries,
		SignatureAlgorithm:        a.sigAlg,
	}, a.root, a.key)
	if err != nil {
		return fmt.Errorf("ca: sign CRL: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return fmt.Errorf("ca: parse the new CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(a.root); err != nil {
		return fmt.Errorf("ca: the new CRL does not verify: %w", err)
	}
	data := keys.EncodeCRLPEM(der)
	if err := durable.WriteFile(a.path(CRLFile), data, 0o644); err != nil {
		return fmt.Errorf("ca: write CRL: %w", err)
	}
	a.crl, a.crlPEM, a.crlDirty = crl, data, false
	a.log.Info("CRL issued", zap.String("number", number.String()), zap.Int("entries", len(entries)),
		zap.Time("next_update", crl.NextUpdate))
	return nil
}

// issueCRL takes a new CRL number and writes a fresh CRL. a.crlMu is held.
func (a *Authority) issueCRL(now time.Time) error {
	var (
		number  *big.Int // set only by the last run of fn
		entries []x509.RevocationListEntry
	)
	err := a.db.Update(func(tx *bolt.Tx) error {
		var err error
		number, entries, err = nextCRL(tx, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("ca: take a CRL number: %w", err)
	}
	return a.writeCRL(number, entries, now)
}

// stale reports whether the current CRL is past half its validity.
func (a *Authority) stale(now time.Time) bool {
	half := a.crl.NextUpdate.Sub(a.crl.ThisUpdate) / 2
	return !now.Before(a.crl.ThisUpdate.Add(half))
}

// CRLPEM returns the current CRL in PEM ("X509 CRL"), as crl.pem holds it.
// A CRL past half its validity, or one that misses a revocation, is
// replaced first; if that fails while the old one is still within its
// nextUpdate, the old one is returned and the failure logged. The caller
// must not modify the slice.
func (a *Authority) CRLPEM() ([]byte, error) {
	a.crlMu.Lock()
	defer a.crlMu.Unlock()
	now := a.now()
	if a.crl != nil && !a.crlDirty && !a.stale(now) {
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
	return a.issueCRL(now)
}

// raiseCRLNumber makes the stored CRL number at least n.
func (a *Authority) raiseCRLNumber(n *big.Int) error {
	if n == nil || !n.IsUint64() {
		return nil
	}
	err := a.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaCRLNumber); len(v) == 8 && binary.BigEndian.Uint64(v) >= n.Uint64() {
			return nil
		}
		return meta.Put(metaCRLNumber, binary.BigEndian.AppendUint64(nil, n.Uint64()))
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
	err := a.db.View(func(tx *bolt.Tx) error {
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
