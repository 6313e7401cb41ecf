package wire

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// transferOptions let full-size Data frames through.
var transferOptions = Options{MaxFrame: MaxDataChunk + 1, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}

// connPair returns two Conns over loopback TCP.
func connPair(t *testing.T) (sender, receiver *Conn) {
	a, b := tcpPair(t)
	return NewConn(a, transferOptions), NewConn(b, transferOptions)
}

// run runs recv on the receiving end in a goroutine and send on the sending end,
// each closing its end when done, and returns both errors.
func run(t *testing.T, send func(*Conn) error, recv func(*Conn) error) (sendErr, recvErr error) {
	t.Helper()
	a, b := connPair(t)
	done := make(chan error, 1)
	go func() {
		err := recv(b)
		b.Close()
		done <- err
	}()
	sendErr = send(a)
	a.Close()
	return sendErr, <-done
}

type testFile struct {
	name string
	data []byte
	sum  [32]byte
}

func newTestFile(name string, n int) testFile {
	data := payload(n)
	return testFile{name: name, data: data, sum: sha256.Sum256(data)}
}

func (f testFile) size() int64 { return int64(len(f.data)) }

// send sends f with SendFile.
func (f testFile) send(opt SendOptions, resumed *int64) func(*Conn) error {
	return func(c *Conn) error {
		off, err := SendFile(c, f.name, bytes.NewReader(f.data), f.size(), f.sum, opt)
		if resumed != nil {
			*resumed = off
		}
		return err
	}
}

// receive receives one file with r and acknowledges it with FileAck, as a
// receiver that stores nothing does.
func receive(r Receiver, got **Received) func(*Conn) error {
	return func(c *Conn) error {
		in, err := r.Receive(c)
		if got != nil {
			*got = in
		}
		if err != nil {
			return err
		}
		return c.WriteMessage(new(FileAck))
	}
}

// checkPeerCode checks that err is the peer's *Error with code want.
func checkPeerCode(t *testing.T, err error, want Code) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != want {
		t.Fatalf("got %v, want the peer's Error with code %v", err, want)
	}
}

func TestTransferFull(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		chunk int
	}{
		{"empty", 0, 0},
		{"one byte", 1, 0},
		{"one chunk", DefaultChunkSize, 0},
		{"odd size", 1<<20 + 7, 0},
		{"full chunks", 1<<20 + 7, MaxDataChunk},
		{"small chunks", 100_000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFile("report-1.pdf", tc.size)
			var progress []int64
			var resumed int64 = -1
			var in *Received
			sendErr, recvErr := run(t,
				f.send(SendOptions{ChunkSize: tc.chunk, Progress: func(n int64) { progress = append(progress, n) }}, &resumed),
				receive(Receiver{MaxSize: 8 << 20}, &in))
			if sendErr != nil || recvErr != nil {
				t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
			}
			if resumed != 0 || in.ResumedFrom != 0 {
				t.Errorf("got resumed from %d (sender) and %d (receiver), want 0", resumed, in.ResumedFrom)
			}
			if in.Name != f.name || in.Size != f.size() || in.SHA256 != f.sum {
				t.Errorf("got Received %q, %d bytes, %x; want %q, %d, %x", in.Name, in.Size, in.SHA256, f.name, f.size(), f.sum)
			}
			mem, ok := in.Sink.(*Memory)
			if !ok || !bytes.Equal(mem.Bytes(), f.data) {
				t.Fatalf("the default sink holds a different file (sink %T)", in.Sink)
			}
			if tc.size > 0 && (len(progress) == 0 || progress[len(progress)-1] != f.size()) {
				t.Errorf("progress: got %v, want it to end at %d", progress, f.size())
			}
		})
	}
}

func TestTransferHashMismatch(t *testing.T) {
	f := newTestFile("liar.txt", 200_000)
	f.sum[0] ^= 0xff // the sender lies about the SHA-256
	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receive(Receiver{MaxSize: 1 << 20}, nil))
	checkPeerCode(t, sendErr, CodeFileMismatch)
	if !isRefusal(recvErr, CodeFileMismatch) || CodeOf(recvErr) != CodeFileMismatch {
		t.Fatalf("receive: got %v, want a file-mismatch refusal", recvErr)
	}
}

func TestTransferTooLarge(t *testing.T) {
	f := newTestFile("big.iso", 1001)
	opened := false
	r := Receiver{MaxSize: 1000, Open: func(*FileHeader) (Sink, error) { opened = true; return new(Memory), nil }}
	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receive(r, nil))
	checkPeerCode(t, sendErr, CodeFileTooLarge)
	var tooLarge *Refusal
	if !errors.As(recvErr, &tooLarge) || tooLarge.Code != CodeFileTooLarge || tooLarge.Text != `file "big.iso" of 1001 bytes exceeds the limit of 1000 bytes` {
		t.Fatalf("receive: got %v, want a file-too-large refusal for 1001 bytes over 1000", recvErr)
	}
	if opened {
		t.Errorf("the receiver opened a sink for a file it refused")
	}
}

var hostileNames = []struct {
	name, reason string
}{
	{"../../etc/x", "begins with '.'"},
	{"/etc/passwd", `contains '/' at byte 0`},
	{"a\x00b", `contains '\x00' at byte 1`},
	{"", "empty"},
	{".", "begins with '.'"},
	{"..", "begins with '.'"},
	{".hidden", "begins with '.'"},
	{"-rf", "begins with '-'"},
	{"a/b", `contains '/' at byte 1`},
	{`a\b`, `contains '\\' at byte 1`},
	{strings.Repeat("a", NameMaxLen+1), "129 bytes long (at most 128)"},
	{"a b", `contains ' ' at byte 1`},
	{"a\nb", `contains '\n' at byte 1`},
	{"résumé.pdf", "contains non-ASCII byte 0xc3 at byte 1"},
	{"a:b", `contains ':' at byte 1`},
	{"*", `contains '*' at byte 0`},
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"a", "report.pdf", "A-b_c+1.tar.gz", "a..b", "x.", "1155000001_report.pdf", strings.Repeat("z", NameMaxLen)} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q): got %v, want nil", name, err)
		}
	}
	for _, tc := range hostileNames {
		err := ValidName(tc.name)
		var bad *Refusal
		if !errors.As(err, &bad) || bad.Code != CodeBadFileName {
			t.Errorf("ValidName(%q): got %v, want a bad-file-name refusal", tc.name, err)
			continue
		}
		if want := fmt.Sprintf("bad file name %q: %s", tc.name, tc.reason); bad.Text != want {
			t.Errorf("ValidName(%q): got %q, want %q", tc.name, bad.Text, want)
		}
	}
}

func TestSafeName(t *testing.T) {
	long := strings.Repeat("a", NameMaxLen) + ".pdf"
	tests := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"My Report (final).pdf", "My_Report__final_.pdf"},
		{".hidden", "_hidden"},
		{"-rf", "_rf"},
		{"..", "_."},
		{"a/b\\c", "a_b_c"},
		{"résumé.txt", "r__sum__.txt"},
		{"tab\there\x00", "tab_here_"},
		{"", "report"},
		{long, "_" + long[len(long)-NameMaxLen+1:]},
		{"." + strings.Repeat("b", NameMaxLen-1), "_" + strings.Repeat("b", NameMaxLen-1)},
	}
	for _, tt := range tests {
		got := SafeName(tt.in, "report")
		if got != tt.want {
			t.Errorf("SafeName(%q): got %q want %q", tt.in, got, tt.want)
		}
		if err := ValidName(got); err != nil {
			t.Errorf("SafeName(%q) = %q, which ValidName refuses: %v", tt.in, got, err)
		}
	}
}

func TestTransferHostileNames(t *testing.T) {
	for _, tc := range hostileNames {
		t.Run(fmt.Sprintf("%q", tc.name), func(t *testing.T) {
			// The sender refuses before sending anything.
			q := &msgQueue{}
			_, err := SendFile(q, tc.name, bytes.NewReader(nil), 0, sha256.Sum256(nil), SendOptions{})
			if !isRefusal(err, CodeBadFileName) {
				t.Errorf("SendFile: got %v, want a bad-file-name refusal", err)
			}
			if len(q.out) != 0 {
				t.Errorf("SendFile sent %d messages, want none", len(q.out))
			}

			// The receiver refuses with bad-file-name, and opens no sink.
			opened := false
			r := Receiver{MaxSize: 100, Open: func(*FileHeader) (Sink, error) { opened = true; return new(Memory), nil }}
			sendErr, recvErr := run(t, func(c *Conn) error {
				if err := c.WriteMessage(&FileHeader{Name: tc.name, Size: 1}); err != nil {
					return err
				}
				_, err := Expect[*FileOffset](c.ReadMessage())
				return err
			}, receive(r, nil))
			checkPeerCode(t, sendErr, CodeBadFileName)
			var bad *Refusal
			if !errors.As(recvErr, &bad) || bad.Code != CodeBadFileName || !strings.HasPrefix(bad.Text, fmt.Sprintf("bad file name %q: ", tc.name)) {
				t.Errorf("receive: got %v, want a bad-file-name refusal naming %q", recvErr, tc.name)
			}
			if opened {
				t.Errorf("the receiver opened a sink for %q", tc.name)
			}
		})
	}
}

func TestTransferAllow(t *testing.T) {
	f := newTestFile("notes.txt", 10)
	for _, tc := range []struct {
		name  string
		allow func(string) error
		want  Code
	}{
		{"plain error", func(string) error { return errors.New("not on the list") }, CodeBadFileName},
		{"refusal", func(string) error { return fmt.Errorf("checking: %w", Refusef(CodeBusy, "too many files")) }, CodeBusy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen string
			allow := func(name string) error { seen = name; return tc.allow(name) }
			sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receive(Receiver{MaxSize: 100, Allow: allow}, nil))
			checkPeerCode(t, sendErr, tc.want)
			if recvErr == nil || seen != f.name {
				t.Errorf("receive: got %v with Allow called on %q, want an error for %q", recvErr, seen, f.name)
			}
		})
	}
}

// rawSender returns a sender that sends a FileHeader for f, reads the offset,
// then sends msgs and reads the receiver's answer.
func rawSender(f testFile, msgs ...Message) func(*Conn) error {
	return func(c *Conn) error {
		if err := c.WriteMessage(&FileHeader{Name: f.name, Size: uint64(f.size()), SHA256: f.sum}); err != nil {
			return err
		}
		if _, err := Expect[*FileOffset](c.ReadMessage()); err != nil {
			return err
		}
		for _, m := range msgs {
			if err := c.WriteMessage(m); err != nil {
				return err
			}
		}
		_, err := Expect[*FileAck](c.ReadMessage())
		return err
	}
}

func TestTransferProtocolViolations(t *testing.T) {
	f := newTestFile("x.bin", 10)
	for _, tc := range []struct {
		name  string
		msgs  []Message
		code  Code
		abort string // how the sink is aborted
	}{
		{"Data past the size", []Message{&Data{Bytes: f.data[:4]}, &Data{Bytes: make([]byte, 7)}}, CodeFileMismatch, "abort(discard)"},
		{"FileAck instead of Data", []Message{&Data{Bytes: f.data[:4]}, &FileAck{}}, CodeUnexpectedMessage, "abort(keep)"},
		{"second FileHeader", []Message{&FileHeader{Name: f.name}}, CodeUnexpectedMessage, "abort(keep)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &fakeSink{}
			sendErr, recvErr := run(t, rawSender(f, tc.msgs...), receive(sink.receiver(100), nil))
			checkPeerCode(t, sendErr, tc.code)
			if !isRefusal(recvErr, tc.code) {
				t.Errorf("receive: got %v, want a refusal with code %v", recvErr, tc.code)
			}
			if got := sink.last(); got != tc.abort {
				t.Errorf("the sink's last call: got %s, want %s", got, tc.abort)
			}
		})
	}
	t.Run("malformed Data", func(t *testing.T) {
		sendErr, recvErr := run(t, func(c *Conn) error {
			c.WriteMessage(&FileHeader{Name: f.name, Size: 10, SHA256: f.sum})
			Expect[*FileOffset](c.ReadMessage())
			c.WriteFrame([]byte{byte(TypeData)}) // empty Data
			_, err := Expect[*FileAck](c.ReadMessage())
			return err
		}, receive(Receiver{MaxSize: 100}, nil))
		checkPeerCode(t, sendErr, CodeMalformed)
		if !isRefusal(recvErr, CodeMalformed) {
			t.Errorf("receive: got %v, want a malformed refusal", recvErr)
		}
	})
	t.Run("oversized frame", func(t *testing.T) {
		sendErr, recvErr := run(t, func(c *Conn) error {
			c.WriteMessage(&FileHeader{Name: f.name, Size: 10, SHA256: f.sum})
			Expect[*FileOffset](c.ReadMessage())
			c.WriteFrame(make([]byte, transferOptions.MaxFrame+1))
			_, err := Expect[*FileAck](c.ReadMessage())
			return err
		}, receive(Receiver{MaxSize: 100}, nil))
		checkPeerCode(t, sendErr, CodeFrameTooLarge)
		if !isRefusal(recvErr, CodeFrameTooLarge) {
			t.Errorf("receive: got %v, want a frame-too-large refusal", recvErr)
		}
	})
	t.Run("peer gives up", func(t *testing.T) {
		_, recvErr := run(t, func(c *Conn) error {
			c.WriteMessage(&FileHeader{Name: f.name, Size: 10, SHA256: f.sum})
			Expect[*FileOffset](c.ReadMessage())
			return Answer(c, Refusef(CodeInternal, "cannot read my own file"))
		}, receive(Receiver{MaxSize: 100}, nil))
		var pe *Error
		if !errors.As(recvErr, &pe) || pe.Code != CodeInternal {
			t.Errorf("receive: got %v, want the sender's Error", recvErr)
		}
	})
}

func TestSendFileBadOffset(t *testing.T) {
	f := newTestFile("x.bin", 10)
	var answer *Error
	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), func(c *Conn) error {
		if _, err := Expect[*FileHeader](c.ReadMessage()); err != nil {
			return err
		}
		if err := c.WriteMessage(&FileOffset{Offset: 11}); err != nil {
			return err
		}
		var err error
		answer, err = Expect[*Error](c.ReadMessage())
		return err
	})
	if !isRefusal(sendErr, CodeBadOffset) || CodeOf(sendErr) != CodeBadOffset {
		t.Fatalf("send: got %v, want a bad-offset refusal", sendErr)
	}
	if recvErr != nil || answer.Code != CodeBadOffset {
		t.Fatalf("receiver: got %v, %v, want an Error with code bad-offset", answer, recvErr)
	}
}

func TestSendFileShortFile(t *testing.T) {
	f := newTestFile("short.bin", 100)
	_, err := SendFile(&msgQueue{in: []Message{&FileOffset{}}}, f.name, bytes.NewReader(f.data[:50]), f.size(), f.sum, SendOptions{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want an error matching io.ErrUnexpectedEOF", err)
	}
}

func TestSendFileOptions(t *testing.T) {
	f := newTestFile("x.bin", 10)
	for _, chunk := range []int{-1, MaxDataChunk + 1} {
		q := &msgQueue{}
		if _, err := SendFile(q, f.name, bytes.NewReader(f.data), f.size(), f.sum, SendOptions{ChunkSize: chunk}); err == nil || len(q.out) != 0 {
			t.Errorf("chunk size %d: got %v and %d messages sent, want an error and nothing sent", chunk, err, len(q.out))
		}
	}
	if _, err := SendFile(&msgQueue{}, f.name, bytes.NewReader(nil), -1, f.sum, SendOptions{}); err == nil {
		t.Errorf("negative size: got no error")
	}
}

// TestTransferSkipAck has a higher-level message take FileAck's place.
func TestTransferSkipAck(t *testing.T) {
	f := newTestFile("x.bin", 100_000)
	var stored []byte
	receipt := &Receipt{ID: "receipt", SID: "a", Serial: []byte{1}, Assignment: "lab", Original: f.name, Name: f.name, Size: uint64(f.size()), SHA256: f.sum, Signature: []byte{2}}
	sendErr, recvErr := run(t, func(c *Conn) error {
		if _, err := SendFile(c, f.name, bytes.NewReader(f.data), f.size(), f.sum, SendOptions{SkipAck: true}); err != nil {
			return err
		}
		got, err := Expect[*Receipt](c.ReadMessage())
		if err == nil && got.ID != "receipt" {
			err = fmt.Errorf("got receipt %q", got.ID)
		}
		return err
	}, func(c *Conn) error {
		r := Receiver{MaxSize: 1 << 20}
		in, err := r.Receive(c)
		if err != nil {
			return err
		}
		stored = in.Sink.(*Memory).Bytes()
		return c.WriteMessage(receipt)
	})
	if sendErr != nil || recvErr != nil {
		t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
	}
	if !bytes.Equal(stored, f.data) {
		t.Errorf("the receiver holds %d different bytes, want the %d sent", len(stored), len(f.data))
	}
}

func TestReceiverConfig(t *testing.T) {
	for _, r := range []Receiver{{}, {MaxSize: -1}} {
		q := &msgQueue{}
		if _, err := r.Receive(q); err == nil {
			t.Errorf("Receive with %+v: got no error", r)
		}
	}
}

func TestHashFile(t *testing.T) {
	f := newTestFile("x", 100_000)
	sum, size, err := HashFile(bytes.NewReader(f.data))
	if err != nil || sum != f.sum || size != f.size() {
		t.Fatalf("got %x, %d, %v; want %x, %d", sum, size, err, f.sum, f.size())
	}
}

// TestSendOnOffset checks that the sender is told the receiver's offset once,
// before any Data is sent, so that a student can say "resuming at byte N"
// before her progress bar starts.
func TestSendOnOffset(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset uint64
		want   string
	}{
		{"fresh", 0, "offset 0, sent 300, sent 600, sent 900, sent 1000"},
		{"resumed", 400, "offset 400, sent 700, sent 1000"},
		{"resumed to the end", 1000, "offset 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFile("report.pdf", 1000)
			q := &msgQueue{in: []Message{&FileOffset{Offset: tc.offset}}}
			var events []string
			_, err := SendFile(q, f.name, bytes.NewReader(f.data), f.size(), f.sum, SendOptions{
				ChunkSize: 300,
				SkipAck:   true,
				OnOffset:  func(off int64) { events = append(events, fmt.Sprintf("offset %d", off)) },
				Progress:  func(n int64) { events = append(events, fmt.Sprintf("sent %d", n)) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(events, ", "); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
