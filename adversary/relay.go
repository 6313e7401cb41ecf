package adversary

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// MessageText is what the adversary looks for in everything it relays: the
// course's message is "This is submission from SID.\n" ten times.
const MessageText = "This is submission from"

// Frame is one frame the adversary relays, as it arrived.
type Frame struct {
	Dir     Direction
	Index   int    // its number in its direction, from 0
	Record  int    // its number among the direction's records, from 0; -1 for a plaintext frame
	Payload []byte // the adversary's own copy, which a rewrite may change
}

// recordType returns the clear type byte of a record frame.
func (f *Frame) recordType() wire.Type { return wire.Type(f.Payload[0]) }

// notebook is what the adversary has learnt of the session so far.
type notebook struct {
	hello        *wire.ClientHello // as the student sent it
	helloSent    []byte            // the ClientHello payload the board received
	serverHello  *wire.ServerHello
	shPayload    []byte
	svPayload    []byte
	firstRecord  []byte // the student's first record
	records      [2]int // records seen, by Direction
	boardRefused bool   // the board's first frame was a plaintext Error
}

// relayAttack is an attack that sits in a relayed session.
type relayAttack struct {
	// rewrite returns the frames to forward in f's place ([][]byte{f.Payload}
	// to relay it unchanged, nil to drop it). It is called with s.mu held,
	// after f was observed. nil relays everything unchanged.
	rewrite func(s *conn, f *Frame) [][]byte

	// after runs once both directions are done and closed.
	after func(ctx context.Context, s *conn)
}

// keep relays f unchanged.
func keep(f *Frame) [][]byte { return [][]byte{f.Payload} }

// relaySession connects to the board and relays the session between it and
// the student, through the attack.
func (s *conn) relaySession(ctx context.Context, student net.Conn) {
	d := net.Dialer{Timeout: dialTimeout}
	board, err := d.DialContext(ctx, "tcp", s.a.cfg.Upstream)
	if err != nil {
		s.log.Warn("ATTACK "+s.a.cfg.Attack+": cannot reach the board; closing the student's connection", zap.Error(err))
		return
	}
	defer board.Close()
	stop := context.AfterFunc(ctx, func() { board.Close() })
	defer stop()

	atk := s.relayAttack()
	deadline := time.Now().Add(s.a.cfg.SessionLimit)
	sw, bw := s.wireConn(student, deadline), s.wireConn(board, deadline)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.pump(ToBoard, sw, bw, atk.rewrite) }()
	go func() { defer wg.Done(); s.pump(ToStudent, bw, sw, atk.rewrite) }()
	wg.Wait()
	student.Close()
	board.Close()

	if atk.rewrite == nil {
		s.act("relayed every frame unchanged (%d frames, %d bytes)", s.rep.Frames[ToBoard]+s.rep.Frames[ToStudent], s.rep.Bytes[ToBoard]+s.rep.Bytes[ToStudent])
	}
	if atk.after != nil {
		atk.after(ctx, s)
	}
}

// wireConn frames c with the adversary's limits.
func (s *conn) wireConn(c net.Conn, deadline time.Time) *wire.Conn {
	wc := wire.NewConn(c, wire.Options{MaxFrame: maxFrame, ReadTimeout: s.a.cfg.FrameTimeout, WriteTimeout: s.a.cfg.FrameTimeout})
	wc.SetDeadline(deadline)
	return wc
}

// pump relays frames in one direction until the sender stops, then closes
// the receiver's side for writing, as the sender did.
func (s *conn) pump(dir Direction, from, to *wire.Conn, rewrite func(*conn, *Frame) [][]byte) {
	defer closeWrite(to.NetConn())
	for i := 0; ; i++ {
		p, err := from.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("ATTACK "+s.a.cfg.Attack+": stopped reading", zap.String("from", senderOf(dir)), zap.Error(err))
			}
			return
		}
		f := &Frame{Dir: dir, Index: i, Payload: bytes.Clone(p)}
		s.mu.Lock()
		s.observe(f)
		out := keep(f)
		if rewrite != nil {
			out = rewrite(s, f)
		}
		s.mu.Unlock()
		for _, o := range out {
			if err := to.WriteFrame(o); err != nil {
				// The receiver is gone. Keep reading (and dropping) for a
				// moment, so that the sender reads what the receiver said last
				// instead of a reset.
				drain(from.NetConn())
				return
			}
		}
	}
}

// senderOf names the side that sends in dir.
func senderOf(dir Direction) string {
	if dir == ToBoard {
		return "the student"
	}
	return "the board"
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite() //nolint:errcheck // the peer may be gone
		return
	}
	c.Close()
}

// drain reads and drops what c still sends, for at most two seconds.
func drain(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(2 * time.Second)) //nolint:errcheck // closing anyway
	io.Copy(io.Discard, io.LimitReader(c, 64<<20))     //nolint:errcheck // draining
}

// observe reads what can be read of f, notes it and logs it. It is called
// with s.mu held.
func (s *conn) observe(f *Frame) {
	s.rep.Frames[f.Dir]++
	s.rep.Bytes[f.Dir] += int64(wire.HeaderSize + len(f.Payload))
	f.Record = -1
	nb := &s.nb
	switch {
	case f.Dir == ToBoard && f.Index == 0:
		s.sawClientHello(f.Payload)
	case f.Dir == ToStudent && f.Index == 0:
		s.sawServerHello(f.Payload)
	case f.Dir == ToStudent && f.Index == 1 && nb.serverHello != nil:
		nb.svPayload = f.Payload
		if m, err := wire.Unmarshal(f.Payload); err == nil {
			if sv, ok := m.(*wire.ServerVerify); ok {
				s.say("read the ServerVerify in the clear: the board's signature over ClientHello || ServerHello",
					zap.Int("signature_bytes", len(sv.Signature)))
			}
		}
	case f.Dir == ToBoard && nb.records[ToBoard] == 0 && s.plainError(f):
		// The student refused the board in step 5, in the clear.
	case nb.boardRefused:
		s.say("the board sent another frame after its refusal", zap.Int("bytes", len(f.Payload)))
	default:
		f.Record = nb.records[f.Dir]
		nb.records[f.Dir]++
		s.sawRecord(f)
	}
	s.search(f)
}

// plainError reports whether f, the student's first frame after the hello,
// is its refusal of step 5 in plaintext, and notes it.
func (s *conn) plainError(f *Frame) bool {
	m, err := wire.Unmarshal(f.Payload)
	if err != nil {
		return false
	}
	e, ok := m.(*wire.Error)
	if !ok {
		return false
	}
	s.rep.StudentRefusal = e.Code
	s.say("read the student's refusal in the clear: "+codeString(e.Code), zap.String("text", e.Text))
	return true
}

// sawClientHello notes and logs the student's hello.
func (s *conn) sawClientHello(p []byte) {
	s.nb.helloSent = p
	m, err := wire.Unmarshal(p)
	if err != nil {
		s.say("the student's first frame is not a ClientHello", zap.Error(err))
		return
	}
	ch, ok := m.(*wire.ClientHello)
	if !ok {
		s.say("the student's first frame is a " + m.Type().String() + ", not a ClientHello")
		return
	}
	s.nb.hello = ch
	s.rep.SID = ch.SID
	fields := []zap.Field{
		zap.String("suites_offered", suiteNames(ch.Suites)),
		zap.String("client_random", hex.EncodeToString(ch.Random[:])),
		zap.Int("kem_public_bytes", len(ch.KEMPublic)),
		zap.Uint64("hello_time_ms", ch.Time),
	}
	fields = append(fields, certFields("student_cert", ch.Certificate)...)
	s.say("read the ClientHello in the clear: SID, certificate, random, time, offered suites, X-Wing public key, the student's signature", fields...)
}

// sawServerHello notes and logs the board's hello, or its refusal.
func (s *conn) sawServerHello(p []byte) {
	m, err := wire.Unmarshal(p)
	if err != nil {
		s.say("the board's first frame does not decode", zap.Error(err))
		return
	}
	switch v := m.(type) {
	case *wire.Error:
		s.nb.boardRefused = true
		s.rep.BoardRefusal = v.Code
		s.say("read the board's refusal in the clear: "+codeString(v.Code), zap.String("text", v.Text))
	case *wire.ServerHello:
		s.nb.serverHello, s.nb.shPayload = v, p
		fields := []zap.Field{
			zap.String("suite_chosen", session.SuiteName(v.Suite)),
			zap.Uint8("key_transport", v.KeyTransport),
			zap.String("server_random", hex.EncodeToString(v.Random[:])),
			zap.Int("encrypted_key_bytes", len(v.EncryptedKey)),
			zap.Int("kem_ciphertext_bytes", len(v.KEMCiphertext)),
		}
		fields = append(fields, certFields("board_cert", v.Certificate)...)
		fields = append(fields, zap.Int("status_bytes", len(v.Status)))
		s.say("read the ServerHello in the clear: the chosen suite, the board's certificate and status; the session key only encrypted to the student's certificate key", fields...)
	default:
		s.say("the board's first frame is a " + m.Type().String())
	}
}

// sawRecord notes a record: its clear type byte and its size are all the
// adversary can read of it.
func (s *conn) sawRecord(f *Frame) {
	tagSize := s.tagSize()
	if len(f.Payload) < 1+tagSize {
		s.say("a frame too short to be a record", zap.String("from", senderOf(f.Dir)), zap.Int("bytes", len(f.Payload)))
		return
	}
	t := f.recordType()
	s.rep.Records[f.Dir][t.String()]++
	n := len(f.Payload) - 1 - tagSize
	if f.Dir == ToBoard {
		if f.Record == 0 {
			s.nb.firstRecord = f.Payload
		}
		if t == wire.TypeData {
			s.rep.SubmissionBytes += int64(n)
		}
	}
	s.log.Debug("ATTACK "+s.a.cfg.Attack+": a record: its type byte is in the clear, the rest is ciphertext and tag",
		zap.String("from", senderOf(f.Dir)), zap.Int("record", f.Record), zap.Stringer("type", t), zap.Int("ciphertext_bytes", n))
	switch t {
	case wire.TypeError:
		s.say(senderOf(f.Dir)+" sent an Error record: the session is ending, and its code is encrypted", zap.Int("record", f.Record))
	case wire.TypeReceipt:
		s.say("the board sent a Receipt record: it stored the submission", zap.Int("record", f.Record))
	}
}

// search counts the message text in every frame, and the SID in records.
func (s *conn) search(f *Frame) {
	s.rep.BytesSearched += int64(len(f.Payload))
	s.rep.PlaintextFound += bytes.Count(f.Payload, []byte(MessageText))
	if f.Record >= 0 && s.rep.SID != "" {
		s.rep.PlaintextFound += bytes.Count(f.Payload, []byte(s.rep.SID))
	}
}

// certFields describes the certificate of a hello for the log: all of it is
// in the clear.
func certFields(prefix string, der []byte) []zap.Field {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return []zap.Field{zap.String(prefix, "unparsable: "+err.Error())}
	}
	eku := make([]string, len(c.ExtKeyUsage))
	for i, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageClientAuth:
			eku[i] = "clientAuth"
		case x509.ExtKeyUsageServerAuth:
			eku[i] = "serverAuth"
		default:
			eku[i] = "other"
		}
	}
	return []zap.Field{
		zap.String(prefix, c.Subject.String()),
		zap.String(prefix+"_issuer", c.Issuer.String()),
		zap.String(prefix+"_serial", keys.SerialHex(c.SerialNumber)),
		zap.String(prefix+"_eku", strings.Join(eku, ",")),
		zap.Time(prefix+"_not_after", c.NotAfter),
	}
}

// suiteNames lists suites by name.
func suiteNames(ids []uint16) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = session.SuiteName(id)
	}
	return strings.Join(names, ",")
}

// tagSize is the size of a record's tag under the suite the ServerHello
// chose (HMAC-SHA256's before one was seen).
func (s *conn) tagSize() int {
	if s.nb.serverHello == nil {
		return tagSize
	}
	return tagSizeOf(s.nb.serverHello.Suite)
}
