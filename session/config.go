package session

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// Sizes of the record layer (PROTOCOL.md §5.3).
const (
	// TagSize is the size of a record's HMAC-SHA256 tag.
	TagSize = 32

	// MaxRecord is the largest record a peer sends: a type byte, a full Data
	// chunk and the tag (65 569 bytes). The board's wire.Conn must accept
	// frames of this size; [Server] refuses to start on one that does not.
	MaxRecord = 1 + wire.MaxDataChunk + TagSize
)

// DefaultHelloWindow is how far a ClientHello's time may be from the board's
// clock when ServerConfig.HelloWindow is zero (board.hello_window).
const DefaultHelloWindow = 5 * time.Minute

// ServerConfig configures the board's side of a session. A ServerConfig may be
// shared by concurrent sessions and must not be modified while they run.
type ServerConfig struct {
	// Certificate is the board's certificate (EKU serverAuth, CN = the
	// board's name), signed by Root.
	Certificate *x509.Certificate

	// Key is the private key of Certificate: ECDSA P-256 or P-384, or RSA.
	Key crypto.Signer

	// Root is the root certificate that must have signed students'
	// certificates, directly: a session carries no intermediates.
	Root *x509.Certificate

	// Status returns the board's current BoardStatus (PROTOCOL.md §4.4),
	// encoded as the CA signed it, or nil when the board holds none that is
	// fresh. The board staples it to every ServerHello; with none, or one
	// that is not for Certificate or not valid now, a session is refused
	// crl-unavailable before any expensive work. It is called once per
	// session, concurrently, and must be cheap (return what is held).
	Status func() []byte

	// CheckRevoked, if set, is called with the student's certificate once its
	// root, validity, usage and SID have been checked. A nil error means it is
	// not revoked. A *wire.Refusal is answered with its own code and text (use
	// wire.CodeCertRevoked, or wire.CodeCRLUnavailable when no fresh CRL is
	// held); any other error is answered crl-unavailable: the board fails
	// closed. This package logs nothing: CheckRevoked logs its own failures.
	CheckRevoked func(cert *x509.Certificate) error

	// HelloWindow is how far a ClientHello's time may be from the board's
	// clock, either way (board.hello_window); DefaultHelloWindow if zero.
	HelloWindow time.Duration

	// Replays remembers the hellos of students who proved possession of
	// their key, until their time has left the window, so that a recorded
	// hello sent again is refused stale-hello for the price of a hash and a
	// lookup (PROTOCOL.md §5.1, STEP 3). Required: one ReplayCache for all
	// the sessions of a board (NewReplayCache).
	Replays *ReplayCache

	// AllowRC4 lets the board choose rc4-hmac-sha256 when the student offers
	// it before any other allowed suite (board.allow_rc4). RC4 is broken.
	AllowRC4 bool

	// Now returns the current time for certificate and hello checks;
	// time.Now if nil.
	Now func() time.Time

	// Rand is the source of the session key, the board's random, RSA-OAEP's
	// seed and RSA-PSS salts; crypto/rand.Reader if nil. (crypto/hpke and,
	// since Go 1.26, ECDSA signing always draw from crypto/rand.)
	Rand io.Reader

	// testHookServerHello, if set, may change the ServerHello before it is
	// sent and signed: tests use it to play a misbehaving board.
	testHookServerHello func(*wire.ServerHello)

	// testHookEncapsulate, if set, replaces the X-Wing encapsulation
	// (encapsulatePQ): the test vectors (vectors_test.go) encapsulate with
	// randomness of their own, which crypto/hpke, drawing its own, cannot.
	testHookEncapsulate func(pk hpke.PublicKey, helloHash [32]byte) (enc, secret []byte, err error)
}

// ClientConfig configures the student's side of a session.
type ClientConfig struct {
	// SID is the student ID the session is for: the CN of Certificate.
	SID string

	// Certificate is the student's certificate.
	Certificate *x509.Certificate

	// Key is the private key of Certificate. It signs the hello and the
	// submission statement and recovers the session key: an RSA key must
	// implement crypto.Decrypter (as *rsa.PrivateKey does) and an ECDSA key
	// must have an ECDH method (as *ecdsa.PrivateKey does).
	Key crypto.Signer

	// Root is the root certificate that must have signed the board's
	// certificate, directly, and the board's status.
	Root *x509.Certificate

	// BoardName is the CN the board's certificate must have
	// (student.board_name).
	BoardName string

	// MinCRLNumber is the highest CRL number this student has seen in a
	// board status under Root: a status with a lower one is refused
	// stale-status, so that a board cannot staple an older status than one
	// already seen. The caller keeps it across sessions, from
	// Conn.BoardStatus of each session that succeeds.
	MinCRLNumber uint64

	// Suites are the cipher suites offered, in order of preference; if empty,
	// aes-256-gcm alone.
	Suites []uint16

	// Now returns the current time for the hello and the certificate and
	// status checks; time.Now if nil.
	Now func() time.Time

	// Rand is the source of the client random and of RSA-PSS salts;
	// crypto/rand.Reader if nil. (The X-Wing key, crypto/hpke and, since Go
	// 1.26, ECDSA signing always draw from crypto/rand.)
	Rand io.Reader

	// Test hooks. testHookKEMKey replaces the generation of the ephemeral
	// X-Wing key; testHookClientHello may change the hello before it is
	// signed (a student that sends such a hello), testHookSignedHello after
	// (an adversary on the way); testHookIgnoreKeyTransport makes a student
	// that cannot decrypt the session key carry on with a garbage one, as an
	// impostor would.
	testHookKEMKey             func() (hpke.PrivateKey, error)
	testHookClientHello        func(*wire.ClientHello)
	testHookSignedHello        func(*wire.ClientHello)
	testHookIgnoreKeyTransport bool

	// dh remembers Key as crypto/ecdh wants it for the HPKE key transport:
	// making it computes the public point again (a scalar multiplication),
	// which a student that keeps her ClientConfig across sessions need not
	// pay in each one.
	dh atomic.Pointer[dhMemo]
}

// dhMemo is an ECDSA key (src) and the same key as an ECDH key.
type dhMemo struct {
	src crypto.Signer
	key *ecdh.PrivateKey
}

// ecdhKey returns cfg.Key as an ECDH key, converted once per Key: the memo
// holds the key it was made from, so a Key replaced in the config is
// converted afresh. The memo lives as long as the config, as Key does.
func (cfg *ClientConfig) ecdhKey() (*ecdh.PrivateKey, error) {
	if m := cfg.dh.Load(); m != nil && m.src == cfg.Key {
		return m.key, nil
	}
	d, ok := cfg.Key.(ecdhKey)
	if !ok {
		return nil, errors.New("the ECDSA key has no ECDH method")
	}
	k, err := d.ECDH()
	if err != nil {
		return nil, err
	}
	cfg.dh.Store(&dhMemo{src: cfg.Key, key: k})
	return k, nil
}

// keyTransportFor returns the key transport for a certificate key
// (PROTOCOL.md §5.1, ServerHello.key_transport), or an error saying why the key
// is not supported.
func keyTransportFor(pub crypto.PublicKey) (uint8, error) {
	err := keys.Supported(pub)
	if err == nil {
		switch k := pub.(type) {
		case *rsa.PublicKey:
			return wire.KeyTransportRSAOAEP, nil
		case *ecdsa.PublicKey:
			if k.Curve == elliptic.P384() {
				return wire.KeyTransportHPKEP384, nil
			}
			return wire.KeyTransportHPKEP256, nil
		}
	}
	return 0, unsupportedKey(pub, err)
}

// unsupportedKey turns keys.Supported's error for pub into the sentence the
// unsupported-key refusal and the client's configuration error use: which key
// it is and which keys are accepted.
func unsupportedKey(pub crypto.PublicKey, err error) error {
	var u *keys.UnsupportedKeyError
	if errors.As(err, &u) {
		switch {
		case u.Bits != 0:
			return fmt.Errorf("an RSA key of %d bits (RSA keys must have %d to %d bits)", u.Bits, keys.MinRSABits, keys.MaxRSABits)
		case u.Curve != "":
			return fmt.Errorf("an ECDSA key on %s (only P-256 and P-384 are accepted)", u.Curve)
		}
	}
	return fmt.Errorf("a %s key (only RSA and ECDSA P-256 or P-384 are accepted)", keys.Describe(pub))
}

// serverSettings are a ServerConfig's values with defaults applied.
type serverSettings struct {
	*ServerConfig
	hooks
	window time.Duration // HelloWindow, or its default
}

// hooks are a side's clock and randomness, with their defaults (time.Now,
// crypto/rand) where the config left them unset.
type hooks struct {
	now  func() time.Time
	rand io.Reader
}

func newHooks(now func() time.Time, r io.Reader) hooks {
	h := hooks{now: now, rand: r}
	if h.now == nil {
		h.now = time.Now
	}
	if h.rand == nil {
		h.rand = rand.Reader
	}
	return h
}

func (cfg *ServerConfig) settings() (*serverSettings, error) {
	if cfg == nil {
		return nil, errors.New("session: no ServerConfig")
	}
	switch {
	case cfg.Certificate == nil:
		return nil, errors.New("session: ServerConfig.Certificate is not set")
	case cfg.Key == nil:
		return nil, errors.New("session: ServerConfig.Key is not set")
	case cfg.Root == nil:
		return nil, errors.New("session: ServerConfig.Root is not set")
	case cfg.Status == nil:
		return nil, errors.New("session: ServerConfig.Status is not set")
	case cfg.Replays == nil:
		return nil, errors.New("session: ServerConfig.Replays is not set (NewReplayCache)")
	case cfg.HelloWindow < 0:
		return nil, fmt.Errorf("session: ServerConfig.HelloWindow is negative (%s)", cfg.HelloWindow)
	case !keys.SamePublicKey(cfg.Key.Public(), cfg.Certificate.PublicKey):
		return nil, errors.New("session: ServerConfig.Key is not the key of the board's certificate")
	}
	if err := keys.CanSign(cfg.Key.Public()); err != nil {
		return nil, fmt.Errorf("session: the board's key: %w", err)
	}
	s := &serverSettings{ServerConfig: cfg, hooks: newHooks(cfg.Now, cfg.Rand), window: cfg.HelloWindow}
	if s.window == 0 {
		s.window = DefaultHelloWindow
	}
	return s, nil
}

// clientSettings are a ClientConfig's values with defaults applied.
type clientSettings struct {
	*ClientConfig
	hooks
	suites []uint16
	kt     uint8 // the key transport the student's key calls for
}

func (cfg *ClientConfig) settings() (*clientSettings, error) {
	if cfg == nil {
		return nil, errors.New("session: no ClientConfig")
	}
	switch {
	case cfg.SID == "" || len(cfg.SID) > wire.MaxSIDLen:
		return nil, fmt.Errorf("session: ClientConfig.SID must be 1 to %d bytes", wire.MaxSIDLen)
	case cfg.Certificate == nil:
		return nil, errors.New("session: ClientConfig.Certificate is not set")
	case cfg.Key == nil:
		return nil, errors.New("session: ClientConfig.Key is not set")
	case cfg.Root == nil:
		return nil, errors.New("session: ClientConfig.Root is not set")
	case cfg.BoardName == "":
		return nil, errors.New("session: ClientConfig.BoardName is not set")
	case len(cfg.Suites) > wire.MaxSuites:
		return nil, fmt.Errorf("session: ClientConfig.Suites has %d suites (at most %d)", len(cfg.Suites), wire.MaxSuites)
	}
	s := &clientSettings{ClientConfig: cfg, hooks: newHooks(cfg.Now, cfg.Rand), suites: cfg.Suites}
	if len(s.suites) == 0 {
		s.suites = []uint16{SuiteAES256GCM}
	}
	for _, id := range s.suites {
		if suiteByID(id) == nil {
			return nil, fmt.Errorf("session: ClientConfig.Suites: unknown suite %s", SuiteName(id))
		}
	}
	// The key's type decides the key transport. Whether it is the key of the
	// certificate is not checked here: a student with the wrong key finds out
	// in the handshake (key-transport-failed), as an impostor would.
	kt, err := keyTransportFor(cfg.Key.Public())
	if err != nil {
		return nil, fmt.Errorf("session: the student's key is %v", err)
	}
	switch kt {
	case wire.KeyTransportRSAOAEP:
		if _, ok := cfg.Key.(crypto.Decrypter); !ok {
			return nil, errors.New("session: the student's RSA key cannot decrypt (it does not implement crypto.Decrypter)")
		}
	default:
		if _, ok := cfg.Key.(ecdhKey); !ok {
			return nil, errors.New("session: the student's ECDSA key has no ECDH method")
		}
	}
	s.kt = kt
	return s, nil
}

// ecdhKey is an ECDSA private key usable for ECDH, as *ecdsa.PrivateKey is.
type ecdhKey interface {
	ECDH() (*ecdh.PrivateKey, error)
}
