package adversary

import (
	"context"
	"slices"

	"go.uber.org/zap"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// relayAttack returns a fresh instance of the connection's attack: each
// connection has its own state.
func (s *conn) relayAttack() relayAttack {
	switch s.a.cfg.Attack {
	case Eavesdrop:
		return relayAttack{after: func(_ context.Context, s *conn) { s.reportEavesdrop() }}
	case Tamper:
		return relayAttack{rewrite: tamper()}
	case Truncate:
		return truncate()
	case Reorder:
		return reorder()
	case Replay:
		return replay()
	case SwapCert:
		return relayAttack{rewrite: swapCert(false)}
	case SwapCertAndSID:
		return relayAttack{rewrite: swapCert(true)}
	case Downgrade:
		return relayAttack{rewrite: downgrade}
	case StealSessionKey:
		return relayAttack{after: func(_ context.Context, s *conn) { s.stealSessionKey() }}
	}
	panic("adversary: no relay for attack " + s.a.cfg.Attack) // New checked the name
}

// isStudentRecord reports whether f is a record from the student.
func isStudentRecord(f *Frame) bool { return f.Dir == ToBoard && f.Record >= 0 }

// Where tamper flips: bit 3 of byte 17 of the first Data record's ciphertext
// (or of its middle byte, if it is shorter).
const (
	tamperByte = 17
	tamperBit  = 3
)

// tamper flips one bit of the ciphertext of the student's first Data record:
// under AES-CTR (or RC4) that flips the same bit of the plaintext, which is
// why a stream cipher needs a MAC.
func tamper() func(*conn, *Frame) [][]byte {
	done := false
	return func(s *conn, f *Frame) [][]byte {
		if done || !isStudentRecord(f) || f.recordType() != wire.TypeData {
			return keep(f)
		}
		done = true
		n := len(f.Payload) - 1 - s.tagSize()
		at := tamperByte
		if n <= at {
			at = n / 2
		}
		f.Payload[1+at] ^= 1 << tamperBit
		s.act("flipped bit %d of byte %d of the ciphertext of record %d (Data, %d bytes), then forwarded it", tamperBit, at, f.Record, n)
		return keep(f)
	}
}

// truncate drops the student's last Data record. It cannot know a Data
// record is the last until the next record arrives, so it forwards each Data
// record one record late, and drops the one it holds when SubmitEnd comes.
func truncate() relayAttack {
	var held *Frame
	return relayAttack{
		rewrite: func(s *conn, f *Frame) [][]byte {
			if !isStudentRecord(f) {
				return keep(f)
			}
			if f.recordType() == wire.TypeData {
				var out [][]byte
				if held != nil {
					out = keep(held)
				}
				held = f
				return out
			}
			if held != nil {
				s.act("dropped record %d (Data, %d bytes of ciphertext), the student's last Data record; forwarded record %d (%v) in its place",
					held.Record, len(held.Payload)-1-s.tagSize(), f.Record, f.recordType())
				held = nil
			}
			return keep(f)
		},
		after: func(_ context.Context, s *conn) {
			if held != nil {
				s.act("the student stopped after record %d (Data), which was never forwarded", held.Record)
			}
		},
	}
}

// reorder swaps the student's first two Data records.
func reorder() relayAttack {
	var held *Frame
	done := false
	return relayAttack{
		rewrite: func(s *conn, f *Frame) [][]byte {
			if done || !isStudentRecord(f) {
				return keep(f)
			}
			if f.recordType() == wire.TypeData {
				if held == nil {
					held = f
					return nil
				}
				done = true
				s.act("swapped records %d and %d (both Data): forwarded record %d first", held.Record, f.Record, f.Record)
				return [][]byte{f.Payload, held.Payload}
			}
			if held != nil {
				// A single Data record: nothing to swap it with.
				s.say("only one Data record came before "+f.recordType().String()+": nothing to reorder; forwarded both in order",
					zap.Int("record", held.Record))
				out := [][]byte{held.Payload, f.Payload}
				held, done = nil, true
				return out
			}
			return keep(f)
		},
	}
}

// downgrade strips aes-256-gcm and aes-256-ctr-hmac-sha256 from the
// ClientHello's offer, so that a board that allows RC4 would pick it. The student's signature stays
// as it was: the adversary cannot sign as the student.
func downgrade(s *conn, f *Frame) [][]byte {
	if f.Dir != ToBoard || f.Index != 0 || s.nb.hello == nil {
		return keep(f)
	}
	ch := *s.nb.hello
	ch.Suites = slices.DeleteFunc(slices.Clone(ch.Suites), func(id uint16) bool {
		return id == suiteAES256GCM || id == suiteAES256CTRHMACSHA256
	})
	if len(ch.Suites) == 0 {
		s.say("the student offers only AES suites: there is nothing to downgrade to; relayed the hello unchanged")
		return keep(f)
	}
	return s.forwardHello(f, &ch, "stripped the AES suites from the student's offer [%s], leaving [%s]",
		suiteNames(s.nb.hello.Suites), suiteNames(ch.Suites))
}

// swapCert replaces the student's certificate in the ClientHello with the
// adversary's own, and with withSID claims the adversary's SID too; it signs
// the changed hello with its own key, as the hello's certificate calls for
// (it cannot sign as the student).
func swapCert(withSID bool) func(*conn, *Frame) [][]byte {
	return func(s *conn, f *Frame) [][]byte {
		if f.Dir != ToBoard || f.Index != 0 || s.nb.hello == nil {
			return keep(f)
		}
		ch := *s.nb.hello
		own := s.a.cfg.Chain[0]
		ch.Certificate = own.Raw
		serial := keys.SerialHex(own.SerialNumber)
		if withSID {
			ch.SID = own.Subject.CommonName
		}
		if err := signHello(&ch, s.a.cfg.Key); err != nil {
			s.say("could not sign the changed hello; relayed the original", zap.Error(err))
			return keep(f)
		}
		if !withSID {
			return s.forwardHello(f, &ch, "replaced the certificate in %s's ClientHello with its own valid one (CN %s, serial %s), keeping SID %s, and signed the hello with its own key",
				ch.SID, own.Subject.CommonName, serial, ch.SID)
		}
		return s.forwardHello(f, &ch, "replaced the certificate and the SID in %s's ClientHello with its own valid ones (SID and CN %s, serial %s), and signed the hello with its own key",
			s.nb.hello.SID, own.Subject.CommonName, serial)
	}
}

// forwardHello sends ch to the board in place of the student's hello, and
// logs what was done.
func (s *conn) forwardHello(f *Frame, ch *wire.ClientHello, format string, args ...any) [][]byte {
	p, err := wire.Marshal(ch)
	if err != nil {
		s.say("could not encode the changed hello; relayed the original", zap.Error(err))
		return keep(f)
	}
	s.nb.helloSent = p
	s.act(format, args...)
	return [][]byte{p}
}

// reportEavesdrop says what the passive adversary could and could not read.
func (s *conn) reportEavesdrop() {
	r := &s.rep
	s.say("what an eavesdropper learns: the SID, both certificates, the hello's time, the board's status, the suites, the randoms, the record types and sizes",
		zap.String("records_to_board", countString(r.Records[ToBoard])),
		zap.String("records_to_student", countString(r.Records[ToStudent])),
		zap.Int64("submission_bytes", r.SubmissionBytes))
	s.say("searched every relayed byte for the message text, and every record for the SID",
		zap.String("text", MessageText), zap.Int64("bytes_searched", r.BytesSearched), zap.Int("found", r.PlaintextFound))
}
