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
// Step 3 checks the cheap things first and ends with the hello's signature:
// until it verifies, the peer has proven nothing, and Server does no
// private-key, HPKE or X-Wing work for it. When Server returns a session, the
// student has proven she holds her certificate's key (the hello's signature);
// SubmitEnd's signature proves it again, over the content.
//
// Every check of step 3 that fails is answered to the student with its Error,
// in plaintext, and returned as a *wire.Refusal wrapped in the error; a
// student's Error is returned as a *wire.Error. The error is a
// *HandshakeError that says at which step the handshake failed and whether
// the peer had proven possession of its key. After an error, c is closed.
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
	now  time.Time

	hello        *wire.ClientHello
	helloPayload []byte   // the hello as received (valid until the next read)
	helloHash    [32]byte // H_hello: SHA-256 of the ClientHello frame
	leaf         *x509.Certificate
	status       []byte // the board's status, to staple
	keyTransport uint8
	suite        uint16
	kemPublic    hpke.PublicKey
	proven       bool // the hello's signature verified and the hello is not a replay

	serverHello *wire.ServerHello
	sessionKey  []byte
	pqSecret    []byte
	th          [32]byte
}

// handshake runs the steps of PROTOCOL.md §5.1 in order.
func (hs *serverHandshake) handshake() (*Conn, error) {
	defer hs.wipe()

	// STEP 3: the student's hello and certificate, the cheap checks first;
	// the hello's signature last.
	for _, check := range []func() error{
		hs.readClientHello,  // 1. version, decoding
		hs.checkFreshness,   // 2. time, replay
		hs.checkCertificate, // 3, 4. root, validity, usage; CN
		hs.checkRevocation,  // 5. CRL, the board's own status
		hs.checkKey,         // 6. key type
		hs.chooseSuite,      // 7. suite
		hs.checkKeyShare,    // 8. kem, kem_public
		hs.checkPossession,  // 9. the hello's signature, and the replay cache
	} {
		if err := check(); err != nil {
			return nil, hs.fail(err)
		}
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
	he := &HandshakeError{Step: hs.step, Proven: hs.proven, Err: hs.io.alert(err)}
	if hs.hello != nil {
		he.SID = hs.hello.SID
	}
	if hs.proven {
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
	hs.now = hs.cfg.now()
	if len(p) >= 3 && wire.Type(p[0]) == wire.TypeClientHello {
		if v := binary.BigEndian.Uint16(p[1:3]); v != wire.ProtocolVersion {
			return wire.Refusef(wire.CodeBadVersion,
				"your pkiboard speaks protocol version %d; this board speaks version %d: update pkiboard", v, wire.ProtocolVersion)
		}
	}
	ch, err := wire.Expect[*wire.ClientHello](wire.Unmarshal(p))
	if err != nil {
		return err
	}
	hs.hello, hs.helloPayload = ch, p
	hs.helloHash = hs.io.sum()
	return nil
}

// checkFreshness checks the hello's time against the board's clock and the
// replay cache: a recorded hello sent again costs the board a hash and a
// lookup.
func (hs *serverHandshake) checkFreshness() error {
	now := msOf(hs.now)
	t, window := hs.hello.Time, uint64(hs.cfg.window.Milliseconds())
	if t+window < t || t > now+window || now > t+window {
		return wire.Refusef(wire.CodeStaleHello,
			"your hello is dated %s but the board's time is %s, more than %s apart: check your computer's clock and try again",
			helloTime(t), hs.now.UTC().Format(time.RFC3339), hs.cfg.window)
	}
	return replayRefusal(hs.cfg.Replays.check(hs.helloHash, t))
}

// replayRefusal words the replay cache's verdict on a hello.
func replayRefusal(v replayVerdict) error {
	switch v {
	case helloReplayed:
		return wire.Refusef(wire.CodeStaleHello,
			"this hello was already used for a session: every connection needs a new hello; try again")
	case helloForgotten:
		return wire.Refusef(wire.CodeStaleHello,
			"the board cannot tell whether this hello was used before (it is older than every hello it remembers): check your computer's clock and try again")
	}
	return nil
}

// helloTime formats a hello's time for a message.
func helloTime(ms uint64) string {
	if ms > 1<<53 {
		return fmt.Sprintf("%d ms after 1970", ms)
	}
	return time.UnixMilli(int64(ms)).UTC().Format(time.RFC3339)
}

// checkCertificate checks the student's certificate against the root alone
// (remembered per certificate), its validity and usage, and its CN.
func (hs *serverHandshake) checkCertificate() error {
	ch := hs.hello
	leaf, cerr := checkPeerCertificate(ch.Certificate, hs.cfg.Root, hs.now, x509.ExtKeyUsageClientAuth)
	if cerr != nil {
		return studentCertRefusal(cerr, hs.now)
	}
	hs.leaf = leaf
	cn, ok := singleCN(leaf)
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
func studentCertRefusal(e *certError, now time.Time) *wire.Refusal {
	switch e.fault {
	case faultParse:
		return wire.Refusef(wire.CodeUnknownCA, "your certificate could not be parsed (%v); enroll again", e.err)
	case faultExpired:
		return wire.Refusef(wire.CodeCertExpired, "your certificate expired at %s; enroll again", utc(e.cert.NotAfter))
	case faultNotYetValid:
		return wire.Refusef(wire.CodeCertExpired,
			"your certificate is not valid before %s and the board's time is %s; try again then, or ask the course staff to check the clocks",
			utc(e.cert.NotBefore), utc(now))
	case faultRootNotValid:
		return wire.Refusef(wire.CodeCertExpired,
			"the board's root certificate %q is valid only from %s to %s; ask the course staff",
			subjectName(e.cert), utc(e.cert.NotBefore), utc(e.cert.NotAfter))
	case faultUsage:
		return wire.Refusef(wire.CodeWrongUsage,
			"your certificate is not a student certificate (its extended key usage does not include clientAuth); enroll as a student")
	case faultCA:
		return wire.Refusef(wire.CodeWrongUsage,
			"you presented a CA certificate, not a student certificate; use the certificate the CA issued to you")
	}
	return wire.Refusef(wire.CodeUnknownCA,
		"your certificate, issued by %q, is not signed by the certificate authority this board trusts; enroll with the course CA and use the certificate it issues",
		issuerName(e.cert))
}

// checkRevocation asks CheckRevoked about the student's certificate, and
// checks that the board holds a fresh status of its own to staple.
func (hs *serverHandshake) checkRevocation() error {
	if hs.cfg.CheckRevoked != nil {
		if err := hs.cfg.CheckRevoked(hs.leaf); err != nil {
			var r *wire.Refusal
			if errors.As(err, &r) {
				return r
			}
			return wire.Refusef(wire.CodeCRLUnavailable,
				"the board cannot check whether your certificate is revoked right now; try again later")
		}
	}
	status, err := hs.cfg.heldStatus(hs.now)
	if err != nil {
		return err
	}
	hs.status = status
	return nil
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

// checkPossession verifies the hello's signature with the certificate's key,
// then records the hello in the replay cache — the one moment a hello is
// recorded, so that of a hello sent twice at once only one goes further.
func (hs *serverHandshake) checkPossession() error {
	msg := wire.HelloSignedBytes(wire.HelloPrefix(hs.helloPayload, hs.hello))
	if err := keys.Verify(hs.leaf.PublicKey, msg, hs.hello.Signature); err != nil {
		return wire.Refusef(wire.CodeBadHelloSignature,
			"the signature over your hello does not verify with your certificate's key: check that your key file belongs to your certificate, or enroll again")
	}
	window := uint64(hs.cfg.window.Milliseconds())
	expire := uint64(0)
	if now := msOf(hs.now); now > window {
		expire = now - window
	}
	if err := replayRefusal(hs.cfg.Replays.insert(hs.helloHash, hs.hello.Time, expire)); err != nil {
		return err
	}
	hs.proven = true
	return nil
}

// sendServerHello draws the session key, encrypts it to the student's
// certificate key, encapsulates the pq secret to the X-Wing key and sends the
// ServerHello with the board's certificate and status.
func (hs *serverHandshake) sendServerHello() error {
	sh := &wire.ServerHello{Version: wire.ProtocolVersion, Suite: hs.suite, KeyTransport: hs.keyTransport,
		Certificate: hs.cfg.Certificate.Raw, Status: hs.status}
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
	encapsulate := encapsulatePQ
	if hook := hs.cfg.testHookEncapsulate; hook != nil {
		encapsulate = hook
	}
	sh.KEMCiphertext, hs.pqSecret, err = encapsulate(hs.kemPublic, hs.helloHash)
	if err != nil {
		return wire.Refusef(wire.CodeBadKeyShare, "your X-Wing public key cannot be used: %v", err)
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
		peer:             hs.leaf,
		own:              hs.cfg.Certificate,
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
