package ca

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// The buckets of ca.db (see the package comment).
var (
	bucketCerts      = []byte("certs")
	bucketCertsBySID = []byte("certs-by-sid")
	bucketRevoked    = []byte("revoked")
	bucketDecisions  = []byte("decisions")
	bucketTokens     = []byte("tokens")
	bucketMeta       = []byte("meta")

	buckets = []string{"certs", "certs-by-sid", "revoked", "decisions", "tokens", "meta"}
)

// Keys of the meta bucket.
var (
	metaSchema    = []byte("schema")
	metaCRLNumber = []byte("crl-number")
)

// schemaVersion is the layout of ca.db this package reads and writes. Schema
// 1 (protocol version 1) stored token hashes and the board secret's hash;
// schema 2 stores tokens' public keys, refusals in a bounded ring, and
// renewals. There are no schema 1 deployments to migrate: a schema 1 store is
// refused (see initSchema).
const schemaVersion = "2"

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

// certRecord is the stored form of a certificate (JSON).
type certRecord struct {
	Serial    string    `json:"serial"`
	SID       string    `json:"sid"`
	Profile   uint8     `json:"profile"`
	Subject   string    `json:"subject"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	DER       []byte    `json:"der"`
	Status    Status    `json:"status"` // StatusValid or StatusRevoked
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    int       `json:"reason"`

	// The accepted decision: the peer, and how it was authorized.
	Peer string `json:"peer,omitempty"`
	Auth string `json:"auth"` // "none", "token" or "renewal"
	// Renews is the serial of the certificate this one renewed;
	// SupersededBy that of the certificate that renewed this one (set in the
	// transaction that revoked this one with reason superseded).
	Renews       string `json:"renews,omitempty"`
	SupersededBy string `json:"superseded_by,omitempty"`
}

// revokedRecord is the stored form of a revocation, for building CRLs.
type revokedRecord struct {
	RevokedAt time.Time `json:"revoked_at"`
	Reason    int       `json:"reason"`
	NotAfter  time.Time `json:"not_after"`
}

// decisionRecord is the stored form of a Decision.
type decisionRecord struct {
	Seq uint64 `json:"-"` // the record's key

	Time     time.Time `json:"time"`
	SID      string    `json:"sid"`
	Peer     string    `json:"peer,omitempty"`
	Profile  uint8     `json:"profile"`
	Accepted bool      `json:"accepted"`
	Code     wire.Code `json:"code,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Serial   string    `json:"serial,omitempty"`
}

// tokenRecord is the stored form of an enrollment token, under its Ed25519
// public key (the bucket's key). Nothing in it, nor the key, is secret or can
// sign a request: a stolen store enrolls nobody.
type tokenRecord struct {
	SID       string    `json:"sid"`
	Profile   uint8     `json:"profile"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	Serial    string    `json:"serial,omitempty"` // the certificate it was spent on
	Cancelled time.Time `json:"cancelled,omitzero"`
}

// storedSerial is a record's serial as keys.SerialHex writes it, whatever case
// it was stored in. (Records written before serials were lowercase everywhere
// stored it in uppercase; it is always parsed, never compared as a string.)
func storedSerial(s string) string { return strings.ToLower(s) }

func parseSerialHex(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("ca: stored serial %q is not a positive hexadecimal number", s)
	}
	return n, nil
}

// sidKey returns the certs-by-sid key of (sid, serial); with serial nil, the
// prefix of all of sid's keys.
func sidKey(sid string, serial []byte) []byte {
	k := make([]byte, 0, 1+len(sid)+len(serial))
	k = append(k, byte(len(sid)))
	k = append(k, sid...)
	return append(k, serial...)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("ca: corrupt record %x: %w", key, err)
	}
	return true, nil
}

// initSchema records the schema version on a new store and refuses a store
// of another version: an older one (protocol version 1, which this CA cannot
// serve), or a newer one.
func (a *Authority) initSchema() error {
	return a.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(metaSchema); {
		case v == nil:
			return meta.Put(metaSchema, []byte(schemaVersion))
		case string(v) == "1":
			return fmt.Errorf("ca: %s in %s was written by pkiboard for protocol version 1 (store schema 1), which this pkiboard cannot use or convert; "+
				"start a new CA in an empty data directory (every student and the board then enroll again)", DBFile, a.o.Dir)
		case string(v) != schemaVersion:
			return fmt.Errorf("ca: %s has store schema %q; this pkiboard reads schema %s: use the pkiboard that wrote it", DBFile, v, schemaVersion)
		}
		return nil
	})
}

func (a *Authority) countCertificates() (int, error) {
	n := 0
	err := a.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketCerts).Stats().KeyN
		return nil
	})
	return n, err
}

// putRefusal appends d to the ring of stored refusals: under the next
// sequence number, dropping the one MaxStoredRefusals before it, so the
// bucket never holds more than MaxStoredRefusals.
func putRefusal(tx *bolt.Tx, d decisionRecord) error {
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	b := tx.Bucket(bucketDecisions)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), data); err != nil {
		return err
	}
	if seq > MaxStoredRefusals {
		return b.Delete(binary.BigEndian.AppendUint64(nil, seq-MaxStoredRefusals))
	}
	return nil
}

// Certificates returns every certificate the CA issued, oldest first.
func (a *Authority) Certificates() ([]CertRecord, error) {
	now := a.now()
	var out []CertRecord
	err := a.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCerts).ForEach(func(k, v []byte) error {
			var r certRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("ca: corrupt certificate record %x: %w", k, err)
			}
			c, err := r.export(now)
			if err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("ca: list certificates: %w", err)
	}
	slices.SortFunc(out, func(x, y CertRecord) int {
		if c := x.NotBefore.Compare(y.NotBefore); c != 0 {
			return c
		}
		return x.Serial.Cmp(y.Serial)
	})
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
	err := a.db.View(func(tx *bolt.Tx) error {
		var err error
		found, err = getJSON(tx.Bucket(bucketCerts), serial.Bytes(), &r)
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
	var out []Decision
	err := a.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDecisions).Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var r decisionRecord
			if err := json.Unmarshal(v, &r); err != nil || len(k) != 8 {
				return fmt.Errorf("ca: corrupt decision record %x: %v", k, err)
			}
			r.Seq = binary.BigEndian.Uint64(k)
			d := Decision{
				Seq: r.Seq, Time: r.Time, SID: r.SID, Peer: r.Peer, Profile: r.Profile,
				Accepted: r.Accepted, Code: r.Code, Reason: r.Reason,
			}
			if r.Serial != "" {
				s, err := parseSerialHex(r.Serial)
				if err != nil {
					return err
				}
				d.Serial = s
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ca: list decisions: %w", err)
	}
	return out, nil
}

// errSerialTaken reports the (astronomically unlikely) reuse of a random
// serial; Enroll draws another.
var errSerialTaken = errors.New("ca: serial number already issued")

// newCertRecord returns the record of a newly issued certificate.
func newCertRecord(cert *x509.Certificate, req Request) certRecord {
	return certRecord{
		Serial: keys.SerialHex(cert.SerialNumber), SID: req.SID, Profile: req.Profile,
		Subject: cert.Subject.String(), NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(),
		DER: cert.Raw, Status: StatusValid, Peer: req.Peer, Auth: authName(req.Auth),
	}
}

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

// putCertificateJSON stores an encoded certificate record under its serial,
// and its index entry; errSerialTaken if the serial is taken.
func putCertificateJSON(tx *bolt.Tx, serial []byte, sid string, data []byte) error {
	certs := tx.Bucket(bucketCerts)
	if certs.Get(serial) != nil {
		return errSerialTaken
	}
	if err := certs.Put(serial, data); err != nil {
		return err
	}
	return tx.Bucket(bucketCertsBySID).Put(sidKey(sid, serial), []byte{})
}
