package session

import (
	"crypto/hpke"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// Server runs the board's side of the handshake (PROTOCOL.md §5.1: steps 3 and
// 4) over c and returns the established session.
//
// The caller bounds the whole handshake: it sets c.SetDeadline to now plus
// board.handshake_timeout before calling Server, which removes that deadline
// once the handshake has succeeded (the per-frame timeouts of c still apply).
// c must accept frames of MaxRecord bytes.
//
// When Server returns, the student has not yet proved that it holds its
// certificate's key: the first record that passes its MAC is that proof (only
// the key's holder can decrypt the session key), and SubmitEnd's signature the
// explicit one. ReceiveSubmission sends nothing before such a record.
//
// Every check of step 3 that fails is answered to the student with its Error,
// in plaintext, and returned as a *wire.Refusal wrapped in the error; a
// student's Error is returned as a *wire.Error. After an error, c is closed.
func Server(c *wire.Conn, cfg *ServerConfig) (*Conn, error) {
	s, err := cfg.settings()
	if err != nil {
		c.Close()
		return nil, err
	}
	if c.MaxFrame() < MaxRecord {
		c.Close()
		return nil, fmt.Errorf("session: the board's connection accepts frames of %d bytes; records need %d (raise board.max_frame)", c.MaxFrame(), MaxRecord)
	}
	hs := &serverHandshake{cfg: s, io: newHandshakeIO(c), step: 3}
	conn, err := hs.handshake()
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return conn, nil
}

// serverHandshake is the state of the board's side of one handshake.
type serverHandshake struct {
	cfg  *serverSettings
	io   handshakeIO
	step int // the course step in progress, for HandshakeError

	hello        *wire.ClientHello
	helloHash    [32]byte // H_hello: SHA-256 of the ClientHello frame
	chain        []*x509.Certificate
	leaf         *x509.Certificate
	keyTransport uint8
	suite        uint16
	kemPublic    hpke.PublicKey

	serverHello *wire.ServerHello
	sessionKey  []byte
	pqSecret    []byte
	th          [32]byte
}

// handshake runs the steps of PROTOCOL.md §5.1 in order.
func (hs *serverHandshake) handshake() (*Conn, error) {
	defer hs.wipe()

	// STEP 3: the student's hello and certificate.
	if err := hs.readClientHello(); err != nil {
		return nil, hs.fail(err)
	}
	if err := hs.checkCertificate(); err != nil {
		return nil, hs.fail(err)
	}
	if err := hs.checkRevocation(); err != nil {
		return nil, hs.fail(err)
	}
	if err := hs.checkKey(); err != nil {
		return nil, hs.fail(err)
	}
	if err := hs.chooseSuite(); err != nil {
		return nil, hs.fail(err)
	}
	if err := hs.checkKeyShare(); err != nil {
		return nil, hs.fail(err)
	}

	// STEP 4: the session key, the encapsulation, the board's signature.
	hs.step = 4
	if err := hs.sendServerHello(); err != nil {
		return nil, hs.fail(err)
	}
	if err := hs.sendServerVerify(); err != nil {
		return nil, hs.fail(err)
	}
	conn, err := hs.establish()
	if err != nil {
		return nil, hs.fail(err)
	}
	return conn, nil
}

// fail answers the student with the Error err calls for and returns err as a
// *HandshakeError of the step in progress.
func (hs *serverHandshake) fail(err error) error {
	he := &HandshakeError{Step: hs.step, Err: hs.io.alert(err)}
	if hs.hello != nil {
		he.SID = hs.hello.SID
	}
	if hs.step == 4 {
		he.Student, he.Suite = hs.leaf, hs.suite
	}
	return he
}

// wipe erases the handshake's secrets.
func (hs *serverHandshake) wipe() {
	clear(hs.sessionKey)
	clear(hs.pqSecret)
}

// readClientHello reads the ClientHello. The version is checked before the
// rest is decoded, so that a student of another version is told bad-version,
// not malformed.
func (hs *serverHandshake) readClientHello() error {
	p, err := hs.io.readFrame()
	if err != nil {
		return err
	}
	if len(p) >= 3 && wire.Type(p[0]) == wire.TypeClientHello {
		if v := binary.BigEndian.Uint16(p[1:3]); v != wire.SessionVersion {
			return wire.Refusef(wire.CodeBadVersion,
				"your pkiboard speaks session version %d; this board speaks version %d: update pkiboard", v, wire.SessionVersion)
		}
	}
	ch, err := wire.Expect[*wire.ClientHello](wire.Unmarshal(p))
	if err != nil {
		return err
	}
	hs.hello = ch
	hs.helloHash = hs.io.sum()
	return nil
}

// checkCertificate checks the student's chain, validity, usage and CN.
func (hs *serverHandshake) checkCertificate() error {
	ch := hs.hello
	chain, cerr := checkPeerChain(ch.Certificates, hs.cfg.Roots, hs.cfg.now(), x509.ExtKeyUsageClientAuth)
	if cerr != nil {
		return studentCertRefusal(cerr, hs.cfg.now())
	}
	hs.chain, hs.leaf = chain, chain[0]
	cn, ok := singleCN(hs.leaf)
	if !ok {
		return wire.Refusef(wire.CodeSIDMismatch,
			"your certificate's subject does not have exactly one CN, so it cannot be for SID %q; enroll again", ch.SID)
	}
	if cn != ch.SID {
		return wire.Refusef(wire.CodeSIDMismatch,
			"your certificate is for SID %q but you connected as SID %q; use the certificate of SID %q, or enroll for it", cn, ch.SID, ch.SID)
	}
	return nil
}

// studentCertRefusal words a fault of the student's certificate for the
// student.
func studentCertRefusal(e *chainError, now time.Time) *wire.Refusal {
	switch e.fault {
	case faultParse:
		return wire.Refusef(wire.CodeUnknownCA, "your certificate could not be parsed (%v); enroll again", e.err)
	case faultExpired:
		return wire.Refusef(wire.CodeCertExpired, "your certificate expired at %s; enroll again", utc(e.cert.NotAfter))
	case faultNotYetValid:
		return wire.Refusef(wire.CodeCertExpired,
			"your certificate is not valid before %s and the board's time is %s; try again then, or ask the course staff to check the clocks",
			utc(e.cert.NotBefore), utc(now))
	case faultChainNotValid:
		return wire.Refusef(wire.CodeCertExpired,
			"the CA certificate %q in your certificate's chain is valid only from %s to %s; ask the course staff",
			subjectName(e.cert), utc(e.cert.NotBefore), utc(e.cert.NotAfter))
	case faultUsage:
		return wire.Refusef(wire.CodeWrongUsage,
			"your certificate is not a student certificate (its extended key usage does not include clientAuth); enroll as a student")
	case faultCA:
		return wire.Refusef(wire.CodeWrongUsage,
			"you presented a CA certificate, not a student certificate; use the certificate the CA issued to you")
	}
	return wire.Refusef(wire.CodeUnknownCA,
		"your certificate, issued by %q, does not chain to the certificate authority this board trusts; enroll with the course CA and use the certificate it issues",
		issuerName(e.cert))
}

// checkRevocation asks CheckRevoked about the student's certificate.
func (hs *serverHandshake) checkRevocation() error {
	if hs.cfg.CheckRevoked == nil {
		return nil
	}
	err := hs.cfg.CheckRevoked(hs.leaf)
	if err == nil {
		return nil
	}
	var r *wire.Refusal
	if errors.As(err, &r) {
		return r
	}
	return wire.Refusef(wire.CodeCRLUnavailable,
		"the board cannot check whether your certificate is revoked right now; try again later")
}

// checkKey checks the type of the student's certificate key.
func (hs *serverHandshake) checkKey() error {
	kt, err := keyTransportFor(hs.leaf.PublicKey)
	if err != nil {
		return wire.Refusef(wire.CodeUnsupportedKey, "your certificate has %v; enroll again with such a key", err)
	}
	hs.keyTransport = kt
	return nil
}

// chooseSuite picks the first suite in the student's order that the board
// allows; unknown ids are skipped.
func (hs *serverHandshake) chooseSuite() error {
	for _, id := range hs.hello.Suites {
		if s := suiteByID(id); s != nil && (s.allowedByDefault || hs.cfg.AllowRC4) {
			hs.suite = id
			return nil
		}
	}
	names := make([]string, len(hs.hello.Suites))
	for i, id := range hs.hello.Suites {
		names[i] = SuiteName(id)
	}
	return wire.Refusef(wire.CodeSuiteNotAllowed,
		"none of the cipher suites you offered (%s) is allowed by this board; offer %s",
		strings.Join(names, ", "), SuiteName(SuiteAES256CTRHMACSHA256))
}

// checkKeyShare checks the KEM id and the X-Wing public key.
func (hs *serverHandshake) checkKeyShare() error {
	if hs.hello.KEM != wire.KEMXWing {
		return wire.Refusef(wire.CodeBadKeyShare,
			"your key share uses KEM 0x%04x; this board requires X-Wing (MLKEM768-X25519, 0x%04x): update pkiboard", hs.hello.KEM, wire.KEMXWing)
	}
	pk, err := xwing.NewPublicKey(hs.hello.KEMPublic)
	if err != nil {
		return wire.Refusef(wire.CodeBadKeyShare,
			"your X-Wing public key (%d bytes) is not valid: %v", len(hs.hello.KEMPublic), err)
	}
	hs.kemPublic = pk
	return nil
}

// sendServerHello draws the session key, encrypts it to the student's
// certificate key, encapsulates the pq secret to the X-Wing key and sends the
// ServerHello.
func (hs *serverHandshake) sendServerHello() error {
	sh := &wire.ServerHello{Version: wire.SessionVersion, Suite: hs.suite, KeyTransport: hs.keyTransport}
	if _, err := io.ReadFull(hs.cfg.rand, sh.Random[:]); err != nil {
		return fmt.Errorf("drawing the board's random: %w", err)
	}
	hs.sessionKey = make([]byte, sessionKeyLen)
	if _, err := io.ReadFull(hs.cfg.rand, hs.sessionKey); err != nil {
		return fmt.Errorf("drawing the session key: %w", err)
	}
	var err error
	sh.EncryptedKey, err = sealSessionKey(hs.cfg.rand, hs.leaf.PublicKey, hs.keyTransport, hs.helloHash, hs.sessionKey)
	if err != nil {
		return fmt.Errorf("encrypting the session key: %w", err)
	}
	sh.KEMCiphertext, hs.pqSecret, err = encapsulatePQ(hs.kemPublic, hs.helloHash)
	if err != nil {
		return wire.Refusef(wire.CodeBadKeyShare, "your X-Wing public key cannot be used: %v", err)
	}
	sh.Certificates = make([][]byte, len(hs.cfg.Chain))
	for i, c := range hs.cfg.Chain {
		sh.Certificates[i] = c.Raw
	}
	if hook := hs.cfg.testHookServerHello; hook != nil {
		hook(sh)
	}
	hs.serverHello = sh
	return hs.io.writeMessage(sh)
}

// sendServerVerify signs the transcript so far and sends the signature.
func (hs *serverHandshake) sendServerVerify() error {
	h := hs.io.sum()
	sig, err := keys.Sign(hs.cfg.Key, hs.cfg.rand, signedMessage(contextServerVerify, h[:]))
	if err != nil {
		return err
	}
	if err := hs.io.writeMessage(&wire.ServerVerify{Signature: sig}); err != nil {
		return err
	}
	hs.th = hs.io.sum()
	return nil
}

// establish derives the record keys and returns the session.
func (hs *serverHandshake) establish() (*Conn, error) {
	c2s, s2c, err := deriveKeys(hs.sessionKey, hs.pqSecret, hs.hello.Random, hs.serverHello.Random, hs.th)
	if err != nil {
		return nil, err
	}
	defer c2s.wipe()
	defer s2c.wipe()
	in, err := newHalfConn(hs.suite, &c2s)
	if err != nil {
		return nil, err
	}
	out, err := newHalfConn(hs.suite, &s2c)
	if err != nil {
		return nil, err
	}
	return &Conn{
		conn:             hs.io.conn,
		sid:              hs.hello.SID,
		suite:            hs.suite,
		keyTransport:     hs.keyTransport,
		th:               hs.th,
		peerChain:        hs.chain,
		ownChain:         hs.cfg.Chain,
		key:              hs.cfg.Key,
		rand:             hs.cfg.rand,
		now:              hs.cfg.now,
		in:               in,
		out:              out,
		acceptPlainError: true,
	}, nil
}

// KeyTransportName names a key transport (PROTOCOL.md §5.1,
// ServerHello.key_transport) for logs and messages, such as "hpke-p256", or
// its number if unknown.
func KeyTransportName(kt uint8) string {
	switch kt {
	case wire.KeyTransportRSAOAEP:
		return "rsa-oaep-sha256"
	case wire.KeyTransportHPKEP256:
		return "hpke-p256"
	case wire.KeyTransportHPKEP384:
		return "hpke-p384"
	}
	return fmt.Sprintf("%d", kt)
}
