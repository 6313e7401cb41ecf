package adversary

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// excerptLen is how much of a submission read by impersonate-board is logged.
const excerptLen = 80

// impersonate answers the student itself, as if it were the board: a
// well-formed ServerHello with the adversary's certificate (self-signed, or
// its own student certificate from the CA), a status for that certificate
// signed with its own key (it has no root key), a fresh session key encrypted
// to the student's own certificate key (which anyone can do), an X-Wing
// encapsulation to the student's one-time key, and a valid signature over the
// transcript with its own key. Everything is right except who signed: so a
// student that checks the board's certificate refuses. A student that did not
// would then send its submission under keys the adversary knows, and the
// adversary reads it.
func (s *conn) impersonate(c net.Conn) {
	wc := s.wireConn(c, time.Now().Add(s.a.cfg.SessionLimit))
	p, err := wc.ReadFrame()
	if err != nil {
		s.say("the student sent no hello", zap.Error(err))
		return
	}
	chPayload := bytes.Clone(p)
	s.observe(&Frame{Dir: ToBoard, Payload: chPayload})
	ch := s.nb.hello
	if ch == nil {
		return
	}
	sh, sessionKey, pqSecret, err := s.serverHelloFor(ch, chPayload)
	if err != nil {
		s.say("cannot answer this student's hello", zap.Error(err))
		return
	}
	shPayload, err := wire.Marshal(sh)
	if err != nil {
		s.say("cannot encode the ServerHello", zap.Error(err))
		return
	}
	sig, err := keys.Sign(s.a.key, rand.Reader, serverVerifyMessage(hashFrames(chPayload, shPayload)))
	if err != nil {
		s.say("cannot sign the transcript", zap.Error(err))
		return
	}
	svPayload, err := wire.Marshal(&wire.ServerVerify{Signature: sig})
	if err != nil {
		s.say("cannot encode the ServerVerify", zap.Error(err))
		return
	}
	if err := wc.WriteFrame(shPayload); err != nil {
		s.say("the student hung up", zap.Error(err))
		return
	}
	if err := wc.WriteFrame(svPayload); err != nil {
		s.say("the student hung up", zap.Error(err))
		return
	}
	s.act("played the board itself with %s: a well-formed ServerHello (a fresh session key encrypted to the student's certificate key, an X-Wing encapsulation%s) and a valid signature by its own key",
		s.identityName(), s.statusName())
	th := hashFrames(chPayload, shPayload, svPayload)
	ikm := append(sessionKey, pqSecret...)
	c2s, err1 := deriveKeys(ikm, ch.Random, sh.Random, th, "c2s")
	s2c, err2 := deriveKeys(ikm, ch.Random, sh.Random, th, "s2c")
	if err := errors.Join(err1, err2); err != nil {
		s.say("key schedule failed", zap.Error(err))
		return
	}
	in, err1 := newRecordCodec(sh.Suite, c2s)
	out, err2 := newRecordCodec(sh.Suite, s2c)
	if err := errors.Join(err1, err2); err != nil {
		s.say("record layer failed", zap.Error(err))
		return
	}
	s.playBoard(wc, in, out)
}

// identityName describes the certificate the adversary presents.
func (s *conn) identityName() string {
	c := s.a.chain[0]
	switch {
	case s.a.selfSigned:
		return fmt.Sprintf("a self-signed certificate for %q", c.Subject.CommonName)
	case slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth):
		return fmt.Sprintf("a board certificate of the course CA (CN %q, serial %s) and its key, stolen",
			c.Subject.CommonName, keys.SerialHex(c.SerialNumber))
	}
	return fmt.Sprintf("its own valid student certificate from the course CA (CN %q, serial %s)",
		c.Subject.CommonName, keys.SerialHex(c.SerialNumber))
}

// statusName describes the status the adversary staples when it was given
// one, as ", stapling …"; "" otherwise.
func (s *conn) statusName() string {
	if len(s.a.cfg.Status) == 0 {
		return ""
	}
	st, err := wire.ParseBoardStatus(s.a.cfg.Status)
	if err != nil {
		return ", stapling the board status it was given (which does not decode)"
	}
	state := "good"
	if st.Revoked {
		state = "revoked"
	}
	return fmt.Sprintf(", stapling the board status it was given (%s, CRL number %d, valid until %s)",
		state, st.CRLNumber, time.Unix(int64(st.NextUpdate), 0).UTC().Format(time.TimeOnly))
}

// serverHelloFor builds the impostor's ServerHello for ch, and returns the
// session key and pq secret it put in it.
func (s *conn) serverHelloFor(ch *wire.ClientHello, chPayload []byte) (sh *wire.ServerHello, sessionKey, pqSecret []byte, err error) {
	leaf, err := x509.ParseCertificate(ch.Certificate)
	if err != nil {
		return nil, nil, nil, err
	}
	kt, err := keyTransportFor(leaf.PublicKey)
	if err != nil {
		return nil, nil, nil, err
	}
	sh = &wire.ServerHello{Version: wire.ProtocolVersion, Suite: suiteAES256CTRHMACSHA256, KeyTransport: kt}
	for _, id := range ch.Suites {
		if id == suiteAES256GCM || id == suiteAES256CTRHMACSHA256 || id == suiteRC4HMACSHA256 {
			sh.Suite = id
			break
		}
	}
	if _, err := rand.Read(sh.Random[:]); err != nil {
		return nil, nil, nil, err
	}
	sessionKey = make([]byte, sessionKeyLen)
	if _, err := rand.Read(sessionKey); err != nil {
		return nil, nil, nil, err
	}
	helloHash := hashFrames(chPayload)
	if sh.EncryptedKey, err = sealSessionKey(leaf.PublicKey, helloHash, sessionKey); err != nil {
		return nil, nil, nil, err
	}
	if sh.KEMCiphertext, pqSecret, err = encapsulatePQ(ch.KEMPublic, helloHash); err != nil {
		return nil, nil, nil, err
	}
	sh.Certificate = s.a.chain[0].Raw
	if sh.Status, err = s.ownStatus(); err != nil {
		return nil, nil, nil, err
	}
	return sh, sessionKey, pqSecret, nil
}

// ownStatus is the best status the impostor can staple: the one it was given
// (a board's, stolen with its key), or else one for its own certificate,
// good, valid now, with the highest CRL number there is, signed with its own
// key (it has no root key).
func (s *conn) ownStatus() ([]byte, error) {
	if len(s.a.cfg.Status) > 0 {
		return s.a.cfg.Status, nil
	}
	c := s.a.chain[0]
	now := time.Now()
	this, next := uint64(now.Add(-time.Minute).Unix()), uint64(now.Add(time.Hour).Unix())
	sum := sha256.Sum256(c.Raw)
	serial := c.SerialNumber.Bytes()
	const crlNumber = 1<<64 - 1
	sig, err := keys.Sign(s.a.key, rand.Reader, statusSignedMessage(serial, sum, crlNumber, false, this, next))
	if err != nil {
		return nil, err
	}
	status := append([]byte{byte(len(serial))}, serial...)
	status = append(status, sum[:]...)
	status = binary.BigEndian.AppendUint64(status, crlNumber)
	status = append(status, 0)
	status = binary.BigEndian.AppendUint64(status, this)
	status = binary.BigEndian.AppendUint64(status, next)
	status = binary.BigEndian.AppendUint16(status, uint16(len(sig)))
	return append(status, sig...), nil
}

// playBoard reads what the student sends after the impostor's handshake: its
// refusal in the clear — or, if it accepted the impostor, its submission,
// which the adversary decrypts.
func (s *conn) playBoard(wc *wire.Conn, in, out *recordCodec) {
	var excerpt []byte
	for i := 1; ; i++ {
		p, err := wc.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.say("stopped reading the student", zap.Error(err))
			}
			break
		}
		f := &Frame{Dir: ToBoard, Index: i, Payload: bytes.Clone(p)}
		s.observe(f)
		if f.Record < 0 {
			return // the student's refusal, in the clear
		}
		msg, err := in.open(f.Payload)
		if err != nil {
			s.say("a record from the student does not verify under the impostor's keys", zap.Error(err))
			break
		}
		t := wire.Type(msg[0])
		if t == wire.TypeData {
			s.rep.PlaintextRead += int64(len(msg) - 1)
			if len(excerpt) < excerptLen {
				excerpt = append(excerpt, msg[1:min(len(msg), 1+excerptLen-len(excerpt))]...)
			}
			continue
		}
		m, err := wire.Unmarshal(msg)
		if err != nil {
			s.say("a record from the student does not decode", zap.Error(err))
			break
		}
		switch v := m.(type) {
		case *wire.SubmitRequest:
			s.act("READ the student's request: assignment %q, file %q, %d bytes; answered terms with no times to get the content", v.Assignment, v.Original, v.Size)
			if err := wc.WriteFrame(out.seal(mustMarshal(&wire.Terms{Assignment: v.Assignment, MaxSize: v.Size}))); err != nil {
				s.say("the student hung up", zap.Error(err))
				return
			}
		case *wire.FileHeader:
			s.act("READ the student's FileHeader: %q, %d bytes, SHA-256 %x; answered FileOffset(0) to get the content", v.Name, v.Size, v.SHA256)
			if err := wc.WriteFrame(out.seal(mustMarshal(&wire.FileOffset{Offset: 0}))); err != nil {
				s.say("the student hung up", zap.Error(err))
				return
			}
		case *wire.SubmitEnd:
			s.act("READ the student's whole submission: %d bytes of plaintext, beginning %q", s.rep.PlaintextRead, excerpt)
			return
		case *wire.Error:
			s.say("READ the student's encrypted refusal: "+codeString(v.Code), zap.String("text", v.Text))
			return
		default:
			s.say("READ a " + m.Type().String() + " record")
		}
	}
	if s.rep.PlaintextRead > 0 {
		s.act("READ %d bytes of the student's submission, beginning %q", s.rep.PlaintextRead, excerpt)
	}
}

// mustMarshal encodes a message that cannot fail to encode.
func mustMarshal(m wire.Message) []byte {
	p, err := wire.Marshal(m)
	if err != nil {
		panic(err)
	}
	return p
}
