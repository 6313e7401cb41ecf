package session

import (
	"crypto/hpke"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// Client runs the student's side of the handshake (PROTOCOL.md §5.1: the
// ClientHello, then step 5) over c and returns the established session.
//
// The caller bounds the whole handshake: it sets c.SetDeadline before calling
// Client, which removes that deadline once the handshake has succeeded (the
// per-frame timeouts of c still apply).
//
// Every check of step 5 that fails is answered to the board with its Error, in
// plaintext, and returned as a *wire.Refusal wrapped in the error; the board's
// Error is returned as a *wire.Error. After an error, c is closed.
func Client(c *wire.Conn, cfg *ClientConfig) (*Conn, error) {
	s, err := cfg.settings()
	if err != nil {
		c.Close()
		return nil, err
	}
	hs := &clientHandshake{cfg: s, io: newHandshakeIO(c)}
	conn, err := hs.handshake()
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return conn, nil
}

// clientHandshake is the state of the student's side of one handshake.
type clientHandshake struct {
	cfg *clientSettings
	io  handshakeIO

	hello     *wire.ClientHello
	helloHash [32]byte        // H_hello: SHA-256 of the ClientHello frame
	kemKey    hpke.PrivateKey // the ephemeral X-Wing key, dropped when the handshake ends

	serverHello  *wire.ServerHello
	helloPair    [32]byte // SHA-256(ClientHello frame || ServerHello frame)
	serverVerify *wire.ServerVerify
	th           [32]byte
	board        *x509.Certificate
	status       *wire.BoardStatus

	sessionKey []byte
	pqSecret   []byte
}

// handshake runs the steps of PROTOCOL.md §5.1 in order.
func (hs *clientHandshake) handshake() (*Conn, error) {
	defer hs.wipe()
	if err := hs.sendClientHello(); err != nil {
		return nil, hs.fail(err)
	}

	// STEP 5: check the board and its status, recover the keys.
	for _, step := range []func() error{
		hs.readServerHello,
		hs.readServerVerify,
		hs.checkBoardCertificate,
		hs.checkStatus,
		hs.checkSignature,
		hs.checkParameters,
		hs.recoverKeys,
	} {
		if err := step(); err != nil {
			return nil, hs.fail(err)
		}
	}
	conn, err := hs.establish()
	if err != nil {
		return nil, hs.fail(err)
	}
	return conn, nil
}

// fail answers the board with the Error err calls for and returns err as a
// *HandshakeError of step 5.
func (hs *clientHandshake) fail(err error) error {
	return &HandshakeError{Step: 5, SID: hs.cfg.SID, Err: hs.io.alert(err)}
}

// wipe erases the handshake's secrets and drops the X-Wing key. crypto/hpke
// offers no way to erase the key itself; dropping the last reference is all
// that can be done.
func (hs *clientHandshake) wipe() {
	clear(hs.sessionKey)
	clear(hs.pqSecret)
	hs.kemKey = nil
}

// sendClientHello makes the ephemeral X-Wing key, signs the hello and sends
// it. Every hello is new: a new random, key, time and signature.
func (hs *clientHandshake) sendClientHello() error {
	gen := xwing.GenerateKey
	if hs.cfg.testHookKEMKey != nil {
		gen = hs.cfg.testHookKEMKey
	}
	k, err := gen()
	if err != nil {
		return fmt.Errorf("generating the X-Wing key: %w", err)
	}
	hs.kemKey = k
	ch := &wire.ClientHello{
		Version:     wire.ProtocolVersion,
		SID:         hs.cfg.SID,
		Certificate: hs.cfg.Certificate.Raw,
		Time:        msOf(hs.cfg.now()),
		Suites:      slices.Clone(hs.cfg.suites),
		KEM:         wire.KEMXWing,
		KEMPublic:   k.PublicKey().Bytes(),
	}
	if _, err := io.ReadFull(hs.cfg.rand, ch.Random[:]); err != nil {
		return fmt.Errorf("drawing the client random: %w", err)
	}
	if hook := hs.cfg.testHookClientHello; hook != nil {
		hook(ch)
	}
	prefix, err := ch.SignedPrefix()
	if err != nil {
		return fmt.Errorf("encoding the hello: %w", err)
	}
	if ch.Signature, err = keys.Sign(hs.cfg.Key, hs.cfg.rand, wire.HelloSignedBytes(prefix)); err != nil {
		return fmt.Errorf("signing the hello: %w", err)
	}
	if hook := hs.cfg.testHookSignedHello; hook != nil {
		hook(ch)
	}
	if err := hs.io.writeMessage(ch); err != nil {
		return err
	}
	hs.hello = ch
	hs.helloHash = hs.io.sum()
	return nil
}

// readServerHello reads the ServerHello, checking its version before the rest.
func (hs *clientHandshake) readServerHello() error {
	p, err := hs.io.readFrame()
	if err != nil {
		return err
	}
	if len(p) >= 3 && wire.Type(p[0]) == wire.TypeServerHello {
		if v := binary.BigEndian.Uint16(p[1:3]); v != wire.ProtocolVersion {
			return wire.Refusef(wire.CodeBadVersion,
				"the board speaks protocol version %d; this pkiboard speaks version %d: update pkiboard", v, wire.ProtocolVersion)
		}
	}
	sh, err := wire.Expect[*wire.ServerHello](wire.Unmarshal(p))
	if err != nil {
		return err
	}
	hs.serverHello = sh
	hs.helloPair = hs.io.sum()
	return nil
}

// readServerVerify reads the board's signature.
func (hs *clientHandshake) readServerVerify() error {
	p, err := hs.io.readFrame()
	if err != nil {
		return err
	}
	sv, err := wire.Expect[*wire.ServerVerify](wire.Unmarshal(p))
	if err != nil {
		return err
	}
	hs.serverVerify = sv
	hs.th = hs.io.sum()
	return nil
}

// checkBoardCertificate checks the board's certificate against the root
// alone, its validity, usage, name and key.
func (hs *clientHandshake) checkBoardCertificate() error {
	now := hs.cfg.now()
	board, cerr := checkPeerCertificate(hs.serverHello.Certificate, hs.cfg.Root, now, x509.ExtKeyUsageServerAuth)
	if cerr != nil {
		return boardCertRefusal(cerr, now)
	}
	hs.board = board
	if cn, ok := singleCN(board); !ok || cn != hs.cfg.BoardName {
		return wire.Refusef(wire.CodeNameMismatch,
			"the board's certificate is for %q, not %q: this is not the board you meant to reach; check student.board_addr and student.board_name",
			subjectName(board), hs.cfg.BoardName)
	}
	if err := keys.CanSign(board.PublicKey); err != nil {
		return wire.Refusef(wire.CodeUnsupportedKey,
			"the board's certificate has a %s key, which has no signature scheme in the protocol; tell the course staff", keys.Describe(board.PublicKey))
	}
	return nil
}

// boardCertRefusal words a fault of the board's certificate for the student.
func boardCertRefusal(e *certError, now time.Time) *wire.Refusal {
	switch e.fault {
	case faultParse:
		return wire.Refusef(wire.CodeUnknownCA, "the board's certificate could not be parsed (%v); tell the course staff", e.err)
	case faultExpired:
		return wire.Refusef(wire.CodeCertExpired, "the board's certificate expired at %s; tell the course staff", utc(e.cert.NotAfter))
	case faultNotYetValid:
		return wire.Refusef(wire.CodeCertExpired,
			"the board's certificate is not valid before %s and your time is %s; check your clock", utc(e.cert.NotBefore), utc(now))
	case faultRootNotValid:
		return wire.Refusef(wire.CodeCertExpired,
			"your root certificate %q is valid only from %s to %s; check your clock, or tell the course staff",
			subjectName(e.cert), utc(e.cert.NotBefore), utc(e.cert.NotAfter))
	case faultUsage:
		return wire.Refusef(wire.CodeWrongUsage,
			"the board's certificate is not a server certificate (its extended key usage does not include serverAuth): this is not the board; check student.board_addr")
	case faultCA:
		return wire.Refusef(wire.CodeWrongUsage,
			"the board presented a CA certificate, not a server certificate: this is not the board; check student.board_addr")
	}
	return wire.Refusef(wire.CodeUnknownCA,
		"the board's certificate, issued by %q, is not signed by your root certificate: this is not the course's board, or your root.pem is wrong; check student.board_addr and enroll again",
		issuerName(e.cert))
}

// checkStatus checks the status the board stapled: signed by the root, for
// this certificate, not revoked, valid now, and not older than one seen.
func (hs *clientHandshake) checkStatus() error {
	s, err := checkBoardStatus(hs.serverHello.Status, hs.board, hs.cfg.Root, hs.cfg.now(), hs.cfg.MinCRLNumber)
	if err != nil {
		return err
	}
	hs.status = s
	return nil
}

// checkSignature verifies the board's signature over ClientHello || ServerHello.
func (hs *clientHandshake) checkSignature() error {
	msg := signedMessage(contextServerVerify, hs.helloPair[:])
	if err := keys.Verify(hs.board.PublicKey, msg, hs.serverVerify.Signature); err != nil {
		return wire.Refusef(wire.CodeBadTranscriptSignature,
			"the board's signature over the handshake does not verify: someone may have changed the messages on the way; try again, from another network if it persists, and tell the course staff")
	}
	return nil
}

// checkParameters checks that the board chose a suite the student offered and
// the key transport the student's key calls for.
func (hs *clientHandshake) checkParameters() error {
	sh := hs.serverHello
	if !slices.Contains(hs.hello.Suites, sh.Suite) {
		return wire.Refusef(wire.CodeUnexpectedMessage,
			"the board chose cipher suite %s, which you did not offer; tell the course staff", SuiteName(sh.Suite))
	}
	if sh.KeyTransport != hs.cfg.kt {
		return wire.Refusef(wire.CodeUnexpectedMessage,
			"the board chose key transport %s, which does not fit your %s key; tell the course staff",
			KeyTransportName(sh.KeyTransport), keys.Describe(hs.cfg.Key.Public()))
	}
	return nil
}

// recoverKeys decrypts the session key and decapsulates the pq secret. ML-KEM
// rejects implicitly: an X-Wing ciphertext of the right length always yields
// a secret, a wrong one another secret, which shows as bad-record-mac on the
// first record (PROTOCOL.md §5.1). Only the ciphertext's length is checked
// here.
func (hs *clientHandshake) recoverKeys() error {
	sh := hs.serverHello
	if len(sh.KEMCiphertext) != xwingCiphertextLen {
		return wire.Refusef(wire.CodeBadKeyShare,
			"the board's X-Wing ciphertext has %d bytes, not %d; tell the course staff", len(sh.KEMCiphertext), xwingCiphertextLen)
	}
	key, err := openSessionKey(hs.cfg.rand, hs.cfg.Key, hs.cfg.ecdhKey, hs.cfg.kt, hs.helloHash, sh.EncryptedKey)
	if err != nil {
		if !hs.cfg.testHookIgnoreKeyTransport {
			return wire.Refusef(wire.CodeKeyTransportFailed,
				"the session key could not be decrypted with your private key: check that your key file belongs to your certificate, or enroll again")
		}
		key = make([]byte, sessionKeyLen) // an impostor's guess
	}
	hs.sessionKey = key
	pq, err := decapsulatePQ(hs.kemKey, sh.KEMCiphertext, hs.helloHash)
	if err != nil {
		// Not reached with a ciphertext of the right length; said all the
		// same, rather than carry on without a pq secret.
		return wire.Refusef(wire.CodeBadKeyShare,
			"the board's X-Wing ciphertext could not be used: %v; tell the course staff", err)
	}
	hs.pqSecret = pq
	return nil
}

// establish derives the record keys and returns the session.
func (hs *clientHandshake) establish() (*Conn, error) {
	c2s, s2c, err := deriveKeys(hs.sessionKey, hs.pqSecret, hs.hello.Random, hs.serverHello.Random, hs.th)
	if err != nil {
		return nil, err
	}
	defer c2s.wipe()
	defer s2c.wipe()
	out, err := newHalfConn(hs.serverHello.Suite, &c2s)
	if err != nil {
		return nil, err
	}
	in, err := newHalfConn(hs.serverHello.Suite, &s2c)
	if err != nil {
		return nil, err
	}
	return &Conn{
		conn:         hs.io.conn,
		isClient:     true,
		sid:          hs.cfg.SID,
		suite:        hs.serverHello.Suite,
		keyTransport: hs.serverHello.KeyTransport,
		th:           hs.th,
		peer:         hs.board,
		own:          hs.cfg.Certificate,
		status:       hs.status,
		root:         hs.cfg.Root,
		key:          hs.cfg.Key,
		rand:         hs.cfg.rand,
		now:          hs.cfg.now,
		in:           in,
		out:          out,
	}, nil
}
