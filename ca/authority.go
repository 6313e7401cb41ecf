package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/keys"
	"pkiboard/internal/roster"
	"pkiboard/internal/sqlstore"
	"pkiboard/wire"
)

// The files an Authority keeps in Options.Dir.
const (
	RootCertFile   = "root.pem"
	RootKeyFile    = "root-key.pem"
	DBFile         = "ca.db"
	CRLFile        = "crl.pem"
	BoardTokenFile = "board-enroll.token"
)

// Defaults for the zero values of Options.
const (
	DefaultKeyAlgorithm = "ecdsa-p256"
	DefaultRootValidity = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 180 * 24 * time.Hour
	DefaultCRLValidity  = 7 * 24 * time.Hour
	DefaultTokenTTL     = 72 * time.Hour

	DefaultStatusValidity = time.Hour
)

// Enrollment policies (Options.Policy).
const (
	PolicyOpen  = "open"  // any SID that passes the checks may enroll: for demos
	PolicyToken = "token" // a student needs a one-time token from CreateToken
)

// backdate is how far before the moment of issue a certificate's (and the
// root's) notBefore is set, for clients whose clocks run slow.
const backdate = time.Minute

// Options configure Open. Dir, Subject.CommonName, Policy, SIDPattern and
// BoardName are required; the other zero values take the defaults above.
type Options struct {
	// Dir is the data directory (see the package comment for its files). It is
	// created with mode 0700 if missing and Create is set.
	Dir string
	// Create lets Open create the CA — its directory, root key and certificate
	// and store — when Dir holds none. Only the CA's own first start sets it;
	// without it Open refuses a directory with no root (ErrNoCA), and creates
	// nothing, so that an operator command pointed at the wrong directory
	// cannot make a new root.
	Create bool
	// Subject names the root on first start; a later start keeps the root's
	// own subject.
	Subject pkix.Name
	// KeyAlgorithm is the root key's algorithm on first start: "ecdsa-p256"
	// (default), "ecdsa-p384", "rsa-2048", "rsa-3072" or "rsa-4096".
	KeyAlgorithm string
	// Passphrase, when not empty, encrypts the root key (PKCS#8, PBES2 with
	// AES-256-CBC, which openssl reads) on first start and decrypts it later.
	// The caller obtains it; the Authority never logs it and keeps no
	// reference to it once Open returns (the caller may clear it then).
	Passphrase []byte

	RootValidity time.Duration // the root certificate's lifetime, on first start
	CertValidity time.Duration // an issued certificate's lifetime (capped at the root's notAfter)
	CRLValidity  time.Duration // from a CRL's thisUpdate to its nextUpdate
	// StatusValidity is how long a board's status (PROTOCOL.md §4.4) is
	// valid, beyond the minute it is backdated: from its this_update to its
	// next_update less that minute.
	StatusValidity time.Duration

	// Policy is PolicyOpen or PolicyToken; it applies to students (profile
	// 1). The board (profile 2) always needs a board token, or its current
	// certificate to renew.
	Policy string
	// SIDPattern is the pattern a student ID must match in full (it is
	// anchored again here, whatever the caller wrote).
	SIDPattern *regexp.Regexp
	// RosterFile, when not empty, lists the SIDs allowed to enroll, in the
	// format of package roster (CSV sid[,name[,email]]; one SID per line is
	// valid). The file is read again when its modification time or size
	// changes.
	RosterFile string
	// TokenTTL is the lifetime of a token when CreateToken is given none.
	TokenTTL time.Duration
	// BoardName is the only name a board certificate (profile 2) is issued for.
	BoardName string

	Now  func() time.Time // the clock; default time.Now
	Rand io.Reader        // serials and tokens; default crypto/rand.Reader; must be safe for concurrent use
	Log  *zap.Logger      // default zap.NewNop()
}

// Authority is an open certificate authority. Its methods are safe for
// concurrent use.
type Authority struct {
	o     Options
	sidRE *regexp.Regexp // o.SIDPattern anchored at both ends
	log   *zap.Logger
	db    *sqlstore.DB

	// refusalBound is the number of refusals ca.db keeps
	// (MaxStoredRefusals; tests lower it).
	refusalBound int

	root    *x509.Certificate
	rootFP  [32]byte // the root's fingerprint, SHA-256 of its DER
	rootPEM []byte
	key     crypto.Signer
	sigAlg  x509.SignatureAlgorithm

	keyEncrypted bool // root-key.pem is encrypted
	created      bool // Open created the root

	roster *roster.File // nil when there is none

	anon anonymous // refusals of peers that proved nothing: counted, never stored

	crlMu    sync.Mutex // serializes CRL numbers, revocations, crl.pem writes and statuses
	crl      *x509.RevocationList
	crlPEM   []byte
	crlDirty bool                       // a revocation is not yet in the CRL served
	crlSave  error                      // why crl.pem does not hold the CRL served; nil when it does
	statuses map[[32]byte]*signedStatus // by board certificate SHA-256; crlMu held

	watchMu sync.Mutex
	watches map[[32]byte]*watch // the boards watching, by certificate SHA-256
	ackWait time.Duration       // how long Revoke waits for the watching boards
	// after is time.After, for the watches' wait until a status is half-way
	// through; tests replace it to run that wait on the injected clock.
	after func(time.Duration) <-chan time.Time
}

// Open opens the authority in o.Dir. On first start (neither root.pem nor
// root-key.pem exists) it creates the root key and certificate and writes a
// one-time board token to board-enroll.token; later it loads the root and
// refuses, with an error that says what to do, any state it cannot trust — it
// never makes a new root while anything of the old one is left.
func Open(o Options) (*Authority, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	if !o.Create {
		if err := checkExists(o.Dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	a := &Authority{
		o:        o,
		sidRE:    regexp.MustCompile(`^(?:` + o.SIDPattern.String() + `)$`),
		log:      o.Log,
		statuses: map[[32]byte]*signedStatus{},
		watches:  map[[32]byte]*watch{},
		ackWait:  RevokeAckWait,
		after:    time.After,

		refusalBound: MaxStoredRefusals,
	}
	db, err := openStore(o.Dir, false)
	if err != nil {
		return nil, err
	}
	a.db = db
	err = a.open()
	a.o.Passphrase = nil // used only here; keep no reference
	if err != nil {
		db.Close()
		return nil, err
	}
	return a, nil
}

func (a *Authority) open() error {
	if err := a.loadOrCreateRoot(); err != nil {
		return err
	}
	a.rootFP = keys.Fingerprint(a.root)
	if a.created {
		if err := a.writeBoardToken(); err != nil {
			return err
		}
	}
	if a.o.RosterFile != "" {
		r, err := roster.Load(a.o.RosterFile, a.sidRE, a.log)
		if err != nil {
			return fmt.Errorf("ca: %w", err)
		}
		a.roster = r
	}
	return a.loadCRL()
}

// fill checks o and sets the defaults.
func (o *Options) fill() error {
	var missing []string
	if o.Dir == "" {
		missing = append(missing, "Dir")
	}
	if o.Subject.CommonName == "" {
		missing = append(missing, "Subject.CommonName")
	}
	if o.SIDPattern == nil {
		missing = append(missing, "SIDPattern")
	}
	if o.BoardName == "" {
		missing = append(missing, "BoardName")
	}
	if len(missing) > 0 {
		return fmt.Errorf("ca: options %v must be set", missing)
	}
	if len(o.BoardName) > wire.MaxSIDLen {
		return fmt.Errorf("ca: board name of %d bytes is longer than %d", len(o.BoardName), wire.MaxSIDLen)
	}
	if o.Policy != PolicyOpen && o.Policy != PolicyToken {
		return fmt.Errorf("ca: policy %q is neither %q nor %q", o.Policy, PolicyOpen, PolicyToken)
	}
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = DefaultKeyAlgorithm
	}
	if !slices.Contains(keys.Algorithms, o.KeyAlgorithm) {
		return fmt.Errorf("ca: key algorithm %q is not one of %v", o.KeyAlgorithm, keys.Algorithms)
	}
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
	}{
		{&o.RootValidity, DefaultRootValidity},
		{&o.CertValidity, DefaultCertValidity},
		{&o.CRLValidity, DefaultCRLValidity},
		{&o.TokenTTL, DefaultTokenTTL},
		{&o.StatusValidity, DefaultStatusValidity},
	} {
		if *d.p < 0 {
			return fmt.Errorf("ca: negative duration %s in options", *d.p)
		}
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return nil
}

// now returns the time from the injected clock, in UTC and whole seconds, as
// certificates and CRLs record it.
func (a *Authority) now() time.Time { return a.o.Now().UTC().Truncate(time.Second) }

// path returns the path of a file in the data directory.
func (a *Authority) path(name string) string { return filepath.Join(a.o.Dir, name) }

// Close closes the store, after the writes in flight. The Authority must not
// be used afterwards (Enroll and the other writers then fail).
func (a *Authority) Close() error {
	if err := a.db.Close(); err != nil {
		return fmt.Errorf("ca: close: %w", err)
	}
	return nil
}

// Root returns the root certificate. The caller must not modify it.
func (a *Authority) Root() *x509.Certificate { return a.root }

// Created reports whether Open created the root (the first start) rather than
// loading it.
func (a *Authority) Created() bool { return a.created }

// KeyEncrypted reports whether the root key is encrypted on disk.
func (a *Authority) KeyEncrypted() bool { return a.keyEncrypted }

// StoreChecked says how Open checked ca.db (which check ran, and why), for
// the start log line.
func (a *Authority) StoreChecked() sqlstore.Checked { return a.db.Checked() }

// RootPEM returns the root certificate in PEM, as root.pem holds it. The
// caller must not modify the slice.
func (a *Authority) RootPEM() []byte { return a.rootPEM }

// ErrNoCA matches the error of Open for a directory that holds no CA while
// Options.Create is not set.
var ErrNoCA = errors.New("no CA here")

// checkExists refuses a directory that holds neither the root certificate
// nor the root key: there is no CA to open, and Open is not to create one.
func checkExists(dir string) error {
	for _, name := range []string{RootCertFile, RootKeyFile} {
		if ok, err := fileExists(filepath.Join(dir, name)); err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("ca: %s holds no CA (no %s, no %s); start the CA once with `pkiboard --role=ca` to create one, or point ca.data_dir at the CA's directory: %w",
		dir, RootCertFile, RootKeyFile, ErrNoCA)
}

// isNotExist reports whether err says a file does not exist.
func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
