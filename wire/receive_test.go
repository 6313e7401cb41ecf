package wire

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
)

// fakeSink is a Sink that records the calls a Receiver makes, holds what it
// is written, and fails the calls it is told to.
type fakeSink struct {
	held       []byte // what it resumes from: an earlier transfer's bytes
	resumeAt   int64  // the offset Resume reports, if not len(held)
	failWrite  error
	failFinish error

	calls   []string // "resume", "write", "finish", "abort(keep)", "abort(discard)"
	written []byte
	opened  *FileHeader
}

func (s *fakeSink) Resume() (int64, io.Reader) {
	s.calls = append(s.calls, "resume")
	off := s.resumeAt
	if off == 0 {
		off = int64(len(s.held))
	}
	if off == 0 {
		return 0, nil
	}
	return off, bytes.NewReader(s.held)
}

func (s *fakeSink) Write(p []byte) (int, error) {
	s.calls = append(s.calls, "write")
	if s.failWrite != nil {
		return 0, s.failWrite
	}
	s.written = append(s.written, p...)
	return len(p), nil
}

func (s *fakeSink) Finish() error {
	s.calls = append(s.calls, "finish")
	return s.failFinish
}

func (s *fakeSink) Abort(keep bool) {
	if keep {
		s.calls = append(s.calls, "abort(keep)")
	} else {
		s.calls = append(s.calls, "abort(discard)")
	}
}

// receiver returns a Receiver of files up to max bytes into s.
func (s *fakeSink) receiver(max int64) Receiver {
	return Receiver{MaxSize: max, Open: func(h *FileHeader) (Sink, error) { s.opened = h; return s, nil }}
}

// last returns the last call the sink received, or "".
func (s *fakeSink) last() string {
	if len(s.calls) == 0 {
		return ""
	}
	return s.calls[len(s.calls)-1]
}

// TestReceiveSink runs the receiver's state machine over a fake sink: what it
// asks of the sink in each case, which Abort it calls, and what it answers.
func TestReceiveSink(t *testing.T) {
	data := payload(1000)
	sum := sha256.Sum256(data)
	header := &FileHeader{Name: "notes.txt", Size: uint64(len(data)), SHA256: sum}
	chunks := func(p []byte) []Message { return []Message{&Data{Bytes: p[:600]}, &Data{Bytes: p[600:]}} }
	diskFull := &fsError{syscall.ENOSPC}
	ioError := &fsError{syscall.EIO}
	tests := []struct {
		name     string
		sink     *fakeSink
		in       []Message // after the header
		open     func(*FileHeader) (Sink, error)
		calls    string // the sink's calls, space-separated
		offset   int64  // the FileOffset answered, if any (-1: none)
		code     Code   // the Error answered, 0 for none
		returned Code   // the code of the error Receive returns, 0 for none
		cause    error  // matched by the returned error, if not nil
	}{
		{name: "complete", sink: &fakeSink{}, in: chunks(data),
			calls: "resume write write finish", offset: 0},
		{name: "resumed", sink: &fakeSink{held: data[:400]}, in: []Message{&Data{Bytes: data[400:]}},
			calls: "resume write finish", offset: 400},
		{name: "resumed to the end", sink: &fakeSink{held: data},
			calls: "resume finish", offset: 1000},
		{name: "held prefix corrupt", sink: &fakeSink{held: append([]byte{data[0] ^ 1}, data[1:400]...)}, in: []Message{&Data{Bytes: data[400:]}},
			calls: "resume write abort(discard)", offset: 400, code: CodeFileMismatch, returned: CodeFileMismatch},
		{name: "hash mismatch", sink: &fakeSink{}, in: chunks(bytes.Repeat([]byte{'x'}, 1000)),
			calls: "resume write write abort(discard)", offset: 0, code: CodeFileMismatch, returned: CodeFileMismatch},
		{name: "Data past the size", sink: &fakeSink{}, in: []Message{&Data{Bytes: data[:600]}, &Data{Bytes: make([]byte, 401)}},
			calls: "resume write abort(discard)", offset: 0, code: CodeFileMismatch, returned: CodeFileMismatch},
		{name: "connection breaks", sink: &fakeSink{}, in: []Message{&Data{Bytes: data[:600]}},
			calls: "resume write abort(keep)", offset: 0, cause: errEndOfQueue},
		{name: "unexpected message", sink: &fakeSink{}, in: []Message{&Data{Bytes: data[:600]}, &FileAck{}},
			calls: "resume write abort(keep)", offset: 0, code: CodeUnexpectedMessage, returned: CodeUnexpectedMessage},
		{name: "the sender refuses", sink: &fakeSink{}, in: []Message{&Error{Code: CodeInternal, Text: "cannot read my file"}},
			calls: "resume abort(keep)", offset: 0, returned: CodeInternal},
		{name: "write fails", sink: &fakeSink{failWrite: diskFull}, in: chunks(data),
			calls: "resume write abort(keep)", offset: 0, code: CodeStorage, returned: CodeStorage, cause: syscall.ENOSPC},
		{name: "finish fails", sink: &fakeSink{failFinish: ioError}, in: chunks(data),
			calls: "resume write write finish abort(keep)", offset: 0, code: CodeStorage, returned: CodeStorage, cause: syscall.EIO},
		{name: "resume beyond the size", sink: &fakeSink{held: data, resumeAt: 1001},
			calls: "resume abort(keep)", offset: -1, code: CodeInternal, returned: CodeInternal},
		{name: "open fails", open: func(*FileHeader) (Sink, error) { return nil, diskFull },
			offset: -1, code: CodeStorage, returned: CodeStorage, cause: syscall.ENOSPC},
		{name: "open refuses", open: func(*FileHeader) (Sink, error) { return nil, Refusef(CodeBusy, "come back later") },
			offset: -1, code: CodeBusy, returned: CodeBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Receiver{MaxSize: 1 << 20, Open: tt.open}
			if tt.sink != nil {
				r = tt.sink.receiver(1 << 20)
			}
			q := &msgQueue{in: append([]Message{header}, tt.in...)}
			got, err := r.Receive(q)

			var calls []string
			if tt.sink != nil {
				calls = tt.sink.calls
			}
			if strings.Join(calls, " ") != tt.calls {
				t.Errorf("the sink's calls: got %q, want %q", strings.Join(calls, " "), tt.calls)
			}
			out := q.out
			if tt.offset >= 0 {
				if fo, ok := first(out).(*FileOffset); !ok || fo.Offset != uint64(tt.offset) {
					t.Fatalf("answered %v first, want FileOffset %d", first(out), tt.offset)
				}
				out = out[1:]
			}
			switch {
			case tt.code == 0 && len(out) != 0:
				t.Errorf("answered %v, want nothing more", out)
			case tt.code != 0:
				if e, ok := first(out).(*Error); len(out) != 1 || !ok || e.Code != tt.code {
					t.Errorf("answered %v, want one Error with code %v", out, tt.code)
				} else if strings.Contains(e.Text, "/secret") {
					t.Errorf("the answer reveals a path: %q", e.Text)
				}
			}

			if tt.returned == 0 && tt.cause == nil {
				if err != nil {
					t.Fatalf("Receive: %v", err)
				}
				if got.Sink != tt.sink || got.Name != header.Name || got.Size != 1000 || got.SHA256 != sum || got.ResumedFrom != tt.offset {
					t.Errorf("got %+v, want the file in the fake sink, resumed from %d", got, tt.offset)
				}
				if !bytes.Equal(append(tt.sink.held[:tt.offset:tt.offset], tt.sink.written...), data) {
					t.Errorf("the sink holds a different file")
				}
				return
			}
			if got != nil {
				t.Errorf("got a file with the error %v", err)
			}
			if tt.returned != 0 && CodeOf(err) != tt.returned {
				t.Errorf("Receive: got %v (code %v), want code %v", err, CodeOf(err), tt.returned)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("Receive: got %v, want it to match %v", err, tt.cause)
			}
		})
	}
}

// fsError is a storage failure that names a path, which a peer must not learn.
type fsError struct{ errno syscall.Errno }

func (e *fsError) Error() string { return fmt.Sprintf("write /secret/partial: %v", e.errno) }
func (e *fsError) Unwrap() error { return e.errno }

func first(msgs []Message) Message {
	if len(msgs) == 0 {
		return nil
	}
	return msgs[0]
}

// TestReceiveStorageText checks the storage refusal: the peer learns the kind
// of failure, not the receiver's paths, and the returned refusal's cause is
// the system error.
func TestReceiveStorageText(t *testing.T) {
	data := []byte("hello")
	q := &msgQueue{in: []Message{&FileHeader{Name: "a.txt", Size: 5, SHA256: sha256.Sum256(data)}, &Data{Bytes: data}}}
	sink := &fakeSink{failWrite: &fsError{syscall.EROFS}}
	r := sink.receiver(100)
	_, err := r.Receive(q)
	var refusal *Refusal
	if !errors.As(err, &refusal) || refusal.Code != CodeStorage || !errors.Is(err, syscall.EROFS) {
		t.Fatalf("got %v, want a storage refusal whose cause is EROFS", err)
	}
	want := `the receiver could not store "a.txt" durably (read-only file system); try again later`
	if e, ok := q.out[len(q.out)-1].(*Error); !ok || e.Text != want || refusal.Text != want {
		t.Errorf("answered %v and returned %q, want the text %q", q.out[len(q.out)-1], refusal.Text, want)
	}
}

// TestMemoryPrealloc checks that a header alone does not make the default
// Memory sink reserve the announced size.
func TestMemoryPrealloc(t *testing.T) {
	r := Receiver{MaxSize: 1 << 30}
	for _, size := range []uint64{0, 100, memoryPrealloc, 1 << 30} {
		sink, err := r.open(&FileHeader{Name: "x", Size: size})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := uint64(cap(sink.(*Memory).buf)), min(size, memoryPrealloc); got != want {
			t.Errorf("size %d: reserved %d bytes, want %d", size, got, want)
		}
	}
}

// TestMemory checks the Memory sink's contract: it never resumes, holds what
// it is written, and drops it on Abort.
func TestMemory(t *testing.T) {
	var m Memory
	if off, prefix := m.Resume(); off != 0 || prefix != nil {
		t.Errorf("Resume: got %d, %v; want 0, nil", off, prefix)
	}
	m.Write([]byte("ab"))
	m.Write([]byte("c"))
	if err := m.Finish(); err != nil || string(m.Bytes()) != "abc" {
		t.Errorf("got %q, %v; want \"abc\"", m.Bytes(), err)
	}
	m.Abort(true)
	if m.Bytes() != nil {
		t.Errorf("after Abort: holds %q, want nothing", m.Bytes())
	}
}
