package session

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"pkiboard/wire"
)

// The c2s frames of the short submission the tamper tests use: the hello,
// then the records SubmitRequest, FileHeader, Data (64 KiB), Data (the rest)
// and SubmitEnd.
const (
	tamperContentLen = wire.MaxDataChunk + 1000
	firstRecord      = 1 // c2s frame index of the first record, the SubmitRequest
	headerRecord     = 2 // c2s frame index of the FileHeader
	lastRecord       = 5 // c2s frame index of SubmitEnd
)

// onRecord returns a tamperFunc that applies f to c2s frame index target
// (s2c if d says so) and forwards every other frame unchanged.
func onRecord(dir direction, target int, f func(frame []byte) [][]byte) tamperFunc {
	return func(d direction, i int, payload []byte) [][]byte {
		if d == dir && i == target {
			return f(payload)
		}
		return [][]byte{payload}
	}
}

// flipAt flips one bit of the frame at offset off (negative: from the end).
func flipAt(off int) func([]byte) [][]byte {
	return func(p []byte) [][]byte {
		p = bytes.Clone(p)
		if off < 0 {
			off += len(p)
		}
		p[off] ^= 0x01
		return [][]byte{p}
	}
}

// TestTamperedRecords flips a byte in every part of every record the student
// sends (the type byte, the ciphertext, the tag): the board refuses with
// bad-record-mac and returns no submission.
func TestTamperedRecords(t *testing.T) {
	p := pki(t)
	content := randomContent(tamperContentLen)
	parts := []struct {
		name string
		off  int
	}{
		{"type", 0},
		{"first ciphertext byte", 1},
		{"last ciphertext byte", -TagSize - 1},
		{"first tag byte", -TagSize},
		{"last tag byte", -1},
	}
	names := map[int]string{1: "FileHeader", 2: "Data", 3: "last Data", 4: "SubmitEnd"}
	for rec := firstRecord; rec <= lastRecord; rec++ {
		for _, part := range parts {
			t.Run(fmt.Sprintf("%s/%s", names[rec], part.name), func(t *testing.T) {
				r := runSession(t, scenario{server: p.serverConfig(), client: p.clientConfig("p256"), content: content,
					tamper: onRecord(c2s, rec, flipAt(part.off))})
				wantRefusal(t, "board", r.serverErr, wire.CodeBadRecordMAC)
				if r.sub != nil || r.receipt != nil {
					t.Errorf("a tampered session produced a submission or a receipt")
				}
				if code, _, ok := codeOf(r.clientErr); !ok || code != wire.CodeBadRecordMAC {
					t.Errorf("student: got %v, want the board's bad-record-mac", r.clientErr)
				}
			})
		}
	}
}

// TestTamperedBoardRecords flips bytes in the board's records: the student
// refuses with bad-record-mac.
func TestTamperedBoardRecords(t *testing.T) {
	p := pki(t)
	for _, tt := range []struct {
		name  string
		index int // s2c frame index: 0 ServerHello, 1 ServerVerify, 2 Terms, 3 FileOffset, 4 Receipt
		off   int
	}{
		{"Terms ciphertext", 2, 5},
		{"FileOffset type", 3, 0},
		{"FileOffset ciphertext", 3, 3},
		{"FileOffset tag", 3, -1},
		{"Receipt ciphertext", 4, 20},
		{"Receipt tag", 4, -7},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runSession(t, scenario{server: p.serverConfig(), client: p.clientConfig("p256"), content: lab(testSID),
				tamper: onRecord(s2c, tt.index, flipAt(tt.off))})
			wantRefusal(t, "student", r.clientErr, wire.CodeBadRecordMAC)
			if r.receipt != nil {
				t.Errorf("the student accepted a receipt")
			}
			if tt.index == 2 || tt.index == 3 {
				// The board learns of it before it has a submission.
				wantPeerError(t, "board", r.serverErr, wire.CodeBadRecordMAC)
				if r.sub != nil {
					t.Errorf("the board returned a submission")
				}
			}
		})
	}
}

// TestDroppedReorderedRepeated drops, swaps and repeats the student's records.
func TestDroppedReorderedRepeated(t *testing.T) {
	p := pki(t)
	content := randomContent(tamperContentLen)
	var tests []struct {
		name   string
		tamper tamperFunc
	}
	add := func(name string, f tamperFunc) {
		tests = append(tests, struct {
			name   string
			tamper tamperFunc
		}{name, f})
	}
	// A record followed by another fails through its successor's MAC. The
	// SubmitRequest and the FileHeader are not followed by anything until
	// the board answers them, so they cannot be dropped or delayed that way
	// (see below).
	for rec := firstRecord; rec < lastRecord; rec++ {
		add(fmt.Sprintf("repeat %d", rec), onRecord(c2s, rec, func(f []byte) [][]byte { return [][]byte{f, f} }))
		if rec > headerRecord {
			add(fmt.Sprintf("drop %d", rec), onRecord(c2s, rec, func([]byte) [][]byte { return nil }))
			add(fmt.Sprintf("swap %d and %d", rec, rec+1), swap(rec))
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runSession(t, scenario{server: p.serverConfig(), client: p.clientConfig("p256"), content: content, tamper: tt.tamper})
			wantRefusal(t, "board", r.serverErr, wire.CodeBadRecordMAC)
			if r.sub != nil || r.receipt != nil {
				t.Errorf("the session produced a submission or a receipt")
			}
		})
	}

	// Dropping a record that waits for an answer (the SubmitRequest, the
	// FileHeader, the SubmitEnd) leaves nothing after it to fail its MAC:
	// the student gives up (here, it hangs up), and the board must never
	// accept the submission.
	for _, rec := range []int{firstRecord, headerRecord, lastRecord} {
		t.Run(fmt.Sprintf("drop %d and hang up", rec), func(t *testing.T) {
			var once sync.Once
			cut, hungUp := make(chan struct{}), make(chan struct{})
			t.Cleanup(func() { <-hungUp }) // after t.Context() is done
			r := runSession(t, scenario{server: p.serverConfig(), client: p.clientConfig("p256"), content: content,
				tamper: onRecord(c2s, rec, func([]byte) [][]byte { once.Do(func() { close(cut) }); return nil }),
				dial: func(addr string) (net.Conn, error) {
					nc, err := net.Dial("tcp", addr)
					if err != nil {
						close(hungUp)
						return nil, err
					}
					go func() {
						defer close(hungUp)
						select {
						case <-cut:
							time.Sleep(50 * time.Millisecond)
						case <-t.Context().Done():
						}
						nc.Close()
					}()
					return nc, nil
				}})
			if r.serverErr == nil || r.sub != nil {
				t.Errorf("board: got %v and submission %v, want an error and none", r.serverErr, r.sub)
			}
		})
	}
}

// swap returns a tamperFunc that sends c2s frames a and a+1 in the other order.
func swap(a int) tamperFunc {
	var held []byte
	return func(d direction, i int, p []byte) [][]byte {
		switch {
		case d != c2s:
			return [][]byte{p}
		case i == a:
			held = bytes.Clone(p)
			return nil
		case i == a+1:
			return [][]byte{p, held}
		}
		return [][]byte{p}
	}
}

// TestReplayedSession records a whole session and replays the student's frames
// against a new board handshake: the board accepts the old hello (it cannot
// tell), but its fresh random and session key give new keys, so the first
// replayed record fails its MAC.
func TestReplayedSession(t *testing.T) {
	p := pki(t)
	content := randomContent(tamperContentLen)
	var px *proxy
	r := runSession(t, scenario{server: p.serverConfig(), client: p.clientConfig("p256"), content: content,
		tamper: func(_ direction, _ int, f []byte) [][]byte { return [][]byte{f} }, proxy: &px})
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("recording the session: board %v, student %v", r.serverErr, r.clientErr)
	}
	recorded := px.frames(t, c2s)

	ln := listen(t)
	type out struct {
		handshake, receive error
		sub                *Submission
	}
	done := make(chan out, 1)
	go func() {
		var o out
		defer func() { done <- o }()
		nc, err := ln.Accept()
		if err != nil {
			o.handshake = err
			return
		}
		defer wire.LingerClose(nc, 2*time.Second, math.MaxInt64)
		conn, err := Server(boardWire(nc), p.serverConfig())
		if err != nil {
			o.handshake = err
			return
		}
		defer conn.Close()
		o.sub, o.receive = receiveSubmission(conn, nil, &wire.Receiver{MaxSize: 1 << 30})
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testTimeout))
	go io.Copy(io.Discard, nc) // the board's answers go nowhere
	for _, f := range recorded {
		if err := wire.WriteFrame(nc, f); err != nil {
			break // the board hung up
		}
	}
	select {
	case o := <-done:
		// The old hello is well formed and its certificate valid, so the board
		// answers it; the first replayed record then fails its MAC under the
		// new session's keys.
		if o.handshake != nil {
			t.Fatalf("the board refused the replayed hello (%v); the test expects the first record to fail", o.handshake)
		}
		wantRefusal(t, "board", o.receive, wire.CodeBadRecordMAC)
		if o.sub != nil {
			t.Errorf("the replayed session was accepted")
		}
	case <-time.After(testWaitDeadline):
		t.Fatal("the board did not finish")
	}
}

// recordPair returns the two ends of one direction of records, with the same
// keys, for tests of the record layer alone.
func recordPair(t testing.TB, suite uint16) (send, recv *halfConn) {
	t.Helper()
	var k trafficKeys
	for i := range k.key {
		k.key[i] = byte(i)
		k.mac[i] = byte(0x80 + i)
	}
	for i := range k.iv {
		k.iv[i] = byte(0x40 + i)
	}
	k2 := k
	send, err := newHalfConn(suite, &k)
	if err != nil {
		t.Fatal(err)
	}
	recv, err = newHalfConn(suite, &k2)
	if err != nil {
		t.Fatal(err)
	}
	if k != (trafficKeys{}) || k2 != (trafficKeys{}) {
		t.Fatal("newHalfConn left the keys in place")
	}
	send.buf = make([]byte, 0, MaxRecord)
	return send, recv
}

// seal makes a record of message msg (type byte, then body) with h.
func seal(t testing.TB, h *halfConn, msg []byte) []byte {
	t.Helper()
	rec := append(h.buf[:0], msg...)
	rec, err := h.seal(rec[:1], rec[1:])
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(rec)
}

func TestRecordRoundTrip(t *testing.T) {
	for _, suite := range []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256} {
		t.Run(SuiteName(suite), func(t *testing.T) {
			send, recv := recordPair(t, suite)
			for i, n := range []int{0, 1, 15, 16, 17, 1000, wire.MaxDataChunk} {
				msg := append([]byte{byte(wire.TypeData)}, randomContent(n)...)
				rec := seal(t, send, msg)
				if len(rec) != len(msg)+send.overhead() {
					t.Fatalf("record of %d bytes for a message of %d", len(rec), len(msg))
				}
				if n >= 16 && bytes.Equal(rec[1:17], msg[1:17]) {
					t.Fatalf("record %d: the body was not encrypted", i)
				}
				got, err := recv.openInPlace(rec)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("record %d: open gave %v", i, err)
				}
			}
			if send.seq != 7 || recv.seq != 7 {
				t.Errorf("sequence numbers %d and %d, want 7", send.seq, recv.seq)
			}
		})
	}
}

// TestRecordFailureLeavesNoTrace checks that a record that fails its MAC is
// not decrypted (its buffer is untouched) and does not advance the state: the
// genuine record still opens afterwards.
func TestRecordFailureLeavesNoTrace(t *testing.T) {
	send, recv := recordPair(t, SuiteAES256CTRHMACSHA256)
	rec := seal(t, send, []byte{byte(wire.TypeFileOffset), 0, 0, 0, 0, 0, 0, 0, 9})
	for i := range rec {
		bad := bytes.Clone(rec)
		bad[i] ^= 0x80
		before := bytes.Clone(bad)
		if _, err := recv.openInPlace(bad); err != errRecordMAC {
			t.Fatalf("byte %d flipped: got %v, want errRecordMAC", i, err)
		}
		if !bytes.Equal(bad, before) {
			t.Fatalf("byte %d flipped: the failed record was modified (decrypted?)", i)
		}
	}
	for _, short := range [][]byte{nil, {1}, rec[:TagSize]} {
		if _, err := recv.openInPlace(short); err != errRecordMAC {
			t.Errorf("a %d-byte record: got %v, want errRecordMAC", len(short), err)
		}
	}
	if _, err := recv.openInPlace(rec); err != nil {
		t.Errorf("the genuine record after failures: %v", err)
	}
}

func TestSequenceExhausted(t *testing.T) {
	send, recv := recordPair(t, SuiteAES256CTRHMACSHA256)
	send.seq, recv.seq = math.MaxUint64-1, math.MaxUint64-1
	rec := seal(t, send, []byte{byte(wire.TypeFileAck)})
	if _, err := recv.openInPlace(rec); err != nil {
		t.Fatalf("the last record: %v", err)
	}
	if _, err := send.seal([]byte{byte(wire.TypeFileAck)}, nil); err != errSeqExhausted {
		t.Errorf("sealing after the last sequence number: got %v, want errSeqExhausted", err)
	}
	if _, err := recv.openInPlace(rec); err != errSeqExhausted {
		t.Errorf("opening after the last sequence number: got %v, want errSeqExhausted", err)
	}
}

// connPair returns a student and a board Conn joined by in-memory pipes with
// the same keys, without a handshake.
func connPair(t testing.TB, suite uint16) (student, board *Conn, studentNet, boardNet net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c2sSend, c2sRecv := recordPair(t, suite)
	s2cSend, s2cRecv := recordPair(t, suite)
	opts := wire.Options{MaxFrame: boardMaxFrame, ReadTimeout: testTimeout, WriteTimeout: testTimeout}
	student = &Conn{conn: wire.NewConn(a, opts), isClient: true, sid: testSID, out: c2sSend, in: s2cRecv}
	board = &Conn{conn: wire.NewConn(b, opts), sid: testSID, out: s2cSend, in: c2sRecv, acceptPlainError: true}
	return student, board, a, b
}

// TestRecordTypes checks the types §5.3 allows, and the refusal of others
// even with a valid MAC.
func TestRecordTypes(t *testing.T) {
	for _, tt := range []struct {
		name string
		msg  []byte
		code wire.Code // 0: accepted
	}{
		{"FileOffset", []byte{byte(wire.TypeFileOffset), 0, 0, 0, 0, 0, 0, 0, 7}, 0},
		{"FileAck", []byte{byte(wire.TypeFileAck)}, 0},
		{"Error", append([]byte{byte(wire.TypeError), 0, 10, 0, 4}, "busy"...), 0},
		{"ClientHello", mustMarshal(t, &wire.ClientHello{Version: wire.ProtocolVersion, SID: "x", Certificate: []byte{1}, Suites: []uint16{1}, KEM: 1, KEMPublic: []byte{1}, Signature: []byte{1}}), wire.CodeUnexpectedMessage},
		{"EnrollRequest", []byte{0x10, 1}, wire.CodeMalformed},
		{"unknown type", []byte{0x99, 1, 2}, wire.CodeUnknownMessage},
		{"empty Data", []byte{byte(wire.TypeData)}, wire.CodeMalformed},
		{"FileOffset with a trailing byte", []byte{byte(wire.TypeFileOffset), 0, 0, 0, 0, 0, 0, 0, 7, 0}, wire.CodeMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			student, board, studentNet, _ := connPair(t, SuiteAES256CTRHMACSHA256)
			rec := seal(t, board.out, tt.msg)
			go wire.WriteFrame(board.conn.NetConn(), rec)
			var answer []byte
			readDone := make(chan struct{})
			if tt.code != 0 {
				go func() { // the Error the student answers with
					defer close(readDone)
					studentNet.SetDeadline(time.Now().Add(testTimeout))
					answer, _ = board.conn.ReadFrame()
				}()
			}
			m, err := student.ReadMessage()
			if tt.code == 0 {
				if err != nil || m.Type() != wire.Type(tt.msg[0]) {
					t.Fatalf("got %v, %v, want a %v", m, err, wire.Type(tt.msg[0]))
				}
				return
			}
			wantRefusal(t, "student", err, tt.code)
			if m != nil {
				t.Errorf("got a message %v with the error", m)
			}
			<-readDone
			plain, oerr := board.in.openInPlace(answer)
			if oerr != nil {
				t.Fatalf("the student's answer is not a valid record: %v", oerr)
			}
			em, uerr := wire.Unmarshal(plain)
			if e, ok := em.(*wire.Error); uerr != nil || !ok || e.Code != tt.code {
				t.Errorf("the student answered %v (%v), want an Error with code %v", em, uerr, tt.code)
			}
			if _, err := student.ReadMessage(); err == nil {
				t.Errorf("a read after a failure succeeded")
			}
		})
	}
}

// TestPlaintextErrorOnlyFirst checks that the board takes a plaintext Error
// (the student's refusal of step 5) only as the first frame, and as nothing
// after a genuine record.
func TestPlaintextErrorOnlyFirst(t *testing.T) {
	plainErr := mustMarshal(t, &wire.Error{Code: wire.CodeNameMismatch, Text: "not the board"})

	_, board, studentNet, _ := connPair(t, SuiteAES256CTRHMACSHA256)
	go wire.WriteFrame(studentNet, plainErr)
	m, err := board.ReadMessage()
	if e, ok := m.(*wire.Error); err != nil || !ok || e.Code != wire.CodeNameMismatch {
		t.Fatalf("first frame: got %v, %v, want the student's Error", m, err)
	}

	student, board, studentNet, _ := connPair(t, SuiteAES256CTRHMACSHA256)
	go func() {
		student.WriteMessage(&wire.FileAck{})
		wire.WriteFrame(studentNet, plainErr)
	}()
	go io.Copy(io.Discard, studentNet) // board's bad-record-mac answer
	if _, err := board.ReadMessage(); err != nil {
		t.Fatalf("the genuine record: %v", err)
	}
	m, err = board.ReadMessage()
	wantRefusal(t, "board", err, wire.CodeBadRecordMAC)
	if m != nil {
		t.Errorf("got %v after a genuine record", m)
	}
}

// TestWriteAfterError checks that an Error is the last message a side sends.
func TestWriteAfterError(t *testing.T) {
	student, _, _, boardNet := connPair(t, SuiteAES256CTRHMACSHA256)
	go io.Copy(io.Discard, boardNet)
	if err := student.WriteMessage(&wire.Error{Code: wire.CodeInternal, Text: "bye"}); err != nil {
		t.Fatal(err)
	}
	if err := student.WriteMessage(&wire.FileAck{}); !errors.Is(err, errAlertSent) {
		t.Errorf("a write after an Error: got %v, want errAlertSent", err)
	}
}

// TestRecordNoAllocs checks the hot path: a full Data record written and read
// through Conn allocates nothing.
func TestRecordNoAllocs(t *testing.T) {
	for _, suite := range []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256} {
		var pipe bytes.Buffer
		mc := &loopConn{buf: &pipe}
		c2sSend, c2sRecv := recordPair(t, suite)
		w := &Conn{conn: wire.NewConn(mc, wire.Options{MaxFrame: boardMaxFrame}), isClient: true, out: c2sSend}
		r := &Conn{conn: wire.NewConn(mc, wire.Options{MaxFrame: boardMaxFrame}), in: c2sRecv}
		d := &wire.Data{Bytes: randomContent(wire.MaxDataChunk)}
		step := func() {
			if err := w.WriteMessage(d); err != nil {
				t.Fatal(err)
			}
			m, err := r.ReadMessage()
			if err != nil || len(m.(*wire.Data).Bytes) != wire.MaxDataChunk {
				t.Fatalf("read: %v", err)
			}
		}
		step() // buffers grow once
		if n := testing.AllocsPerRun(50, step); n != 0 {
			t.Errorf("%s: %v allocations per record, want 0", SuiteName(suite), n)
		}
	}
}

// loopConn is a net.Conn whose writes are read back.
type loopConn struct {
	memConn
	buf *bytes.Buffer
}

func (l *loopConn) Read(p []byte) (int, error)  { return l.buf.Read(p) }
func (l *loopConn) Write(p []byte) (int, error) { return l.buf.Write(p) }

// TestCloseUnblocksAndWipes checks that Close unblocks a reader and erases the
// record state.
func TestCloseUnblocksAndWipes(t *testing.T) {
	_, board, studentNet, _ := connPair(t, SuiteRC4HMACSHA256)
	done := make(chan error, 1)
	go func() {
		_, err := board.ReadMessage()
		done <- err
	}()
	// A net.Pipe write returns only once the other end has read it: after
	// this first byte of a frame header, the reader is inside ReadMessage,
	// waiting for the other three.
	studentNet.SetWriteDeadline(time.Now().Add(testWaitDeadline))
	if _, err := studentNet.Write([]byte{0}); err != nil {
		t.Fatalf("the reader did not start reading: %v", err)
	}
	board.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a read on a closed Conn succeeded")
		}
	case <-time.After(testWaitDeadline):
		t.Fatal("Close did not unblock the reader")
	}
	if board.in.stream != nil || board.out.mac != nil {
		t.Error("Close left the record state in place")
	}
	if err := board.WriteMessage(&wire.FileAck{}); err == nil {
		t.Error("a write on a closed Conn succeeded")
	}
	board.Close() // twice is fine
}

func mustMarshal(t testing.TB, m wire.Message) []byte {
	t.Helper()
	b, err := wire.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
