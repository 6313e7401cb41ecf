package adversary

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"pkiboard/wire"
)

// replay relays a session unchanged while recording what the student sends,
// and once it is over replays the student's frames to the board on a new
// connection: the ClientHello, then every record.
func replay() relayAttack {
	var recorded [][]byte
	var size int
	return relayAttack{
		rewrite: func(s *conn, f *Frame) [][]byte {
			if f.Dir == ToBoard && size+len(f.Payload) <= maxRecorded {
				recorded = append(recorded, bytes.Clone(f.Payload))
				size += len(f.Payload)
			}
			return keep(f)
		},
		after: func(ctx context.Context, s *conn) {
			s.replayTo(ctx, recorded)
		},
	}
}

// replayTo plays the recorded student frames to the board and logs what the
// board answers: the frames of the handshake in the clear, then the type byte
// of each record.
func (s *conn) replayTo(ctx context.Context, recorded [][]byte) {
	if len(recorded) < 2 || s.nb.serverHello == nil {
		s.say("the recorded session has no records to replay", zap.Int("frames", len(recorded)))
		return
	}
	s.act("recorded the session (%d frames from the student); now replaying them to the board on a new connection", len(recorded))
	s.rep.ReplayAnswers = map[string]int{}
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", s.a.cfg.Upstream)
	if err != nil {
		s.say("cannot reach the board to replay", zap.Error(err))
		return
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	wc := s.wireConn(nc, time.Now().Add(s.a.cfg.SessionLimit))

	if err := wc.WriteFrame(recorded[0]); err != nil {
		s.say("the board did not take the replayed ClientHello", zap.Error(err))
		return
	}
	p, err := wc.ReadFrame()
	if err != nil {
		s.say("the board hung up after the replayed ClientHello", zap.Error(err))
		return
	}
	m, err := wire.Unmarshal(p)
	if err != nil {
		s.say("the board's answer to the replayed ClientHello does not decode", zap.Error(err))
		return
	}
	switch v := m.(type) {
	case *wire.Error:
		s.rep.ReplayRefusal = v.Code
		s.say("the board refused the replayed ClientHello in the clear: "+codeString(v.Code), zap.String("text", v.Text))
		return
	case *wire.ServerHello:
		s.say("the board accepted the replayed ClientHello (it cannot tell a replayed hello from a new one) and answered with a fresh random: new session keys, unknown to the recording",
			zap.Bool("same_random_as_recorded", v.Random == s.nb.serverHello.Random),
			zap.Bool("same_encrypted_key_as_recorded", bytes.Equal(v.EncryptedKey, s.nb.serverHello.EncryptedKey)))
	default:
		s.say("the board answered the replayed ClientHello with a " + m.Type().String())
		return
	}
	if _, err := wc.ReadFrame(); err != nil { // ServerVerify
		s.say("the board hung up before its ServerVerify", zap.Error(err))
		return
	}

	// Read the board's records while the recorded ones go out.
	answers := make(chan struct{})
	go func() {
		defer close(answers)
		for {
			p, err := wc.ReadFrame()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.log.Debug("ATTACK replay: stopped reading the board", zap.Error(err))
				}
				return
			}
			if len(p) == 0 {
				continue
			}
			t := wire.Type(p[0]).String()
			s.mu.Lock()
			s.rep.ReplayAnswers[t]++
			s.mu.Unlock()
			s.log.Debug("ATTACK replay: the board sent a record", zap.String("type", t), zap.Int("bytes", len(p)))
		}
	}()
	n := 0
	for _, f := range recorded[1:] {
		if err := wc.WriteFrame(f); err != nil {
			break // the board hung up
		}
		n++
	}
	closeWrite(nc)
	select {
	case <-answers:
	case <-time.After(s.a.cfg.FrameTimeout):
		nc.Close()
		<-answers
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Replayed = n
	s.act("replayed %d recorded records to the board", n)
	switch {
	case s.rep.ReplayAnswers[wire.TypeReceipt.String()] > 0:
		s.say("the board sent a Receipt record: the replayed submission was accepted")
	case s.rep.ReplayAnswers[wire.TypeError.String()] > 0:
		s.say("the board answered with an Error record (its code is encrypted) and closed: the replayed records do not verify under the new keys",
			zap.String("answers", countString(s.rep.ReplayAnswers)))
	default:
		s.say("the board closed without a receipt", zap.String("answers", countString(s.rep.ReplayAnswers)))
	}
}
