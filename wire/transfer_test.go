package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// receiveInto receives one file into dir with ReceiveFileInto.
func receiveInto(dir string, r Receiver, in **Incoming) func(*Conn) error {
	return func(c *Conn) error {
		got, err := ReceiveFileInto(c, dir, r)
		if in != nil {
			*in = got
		}
		return err
	}
}

// partialPaths returns the partial and checkpoint files of f in dir.
func partialPaths(dir string, f testFile) (part, ckpt string) {
	base := filepath.Join(dir, "."+hex.EncodeToString(f.sum[:])+"."+f.name)
	return base + partSuffix, base + checkpointSuffix
}

// checkPeerCode checks that err is the peer's *Error with code want.
func checkPeerCode(t *testing.T, err error, want Code) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != want {
		t.Fatalf("got %v, want the peer's Error with code %v", err, want)
	}
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes with SHA-256 %x, want %d bytes with SHA-256 %x",
			path, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != fileMode {
		t.Errorf("%s: got mode %v, want %v", path, mode, fs.FileMode(fileMode))
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
			dir := filepath.Join(t.TempDir(), "incoming")
			f := newTestFile("report-1.pdf", tc.size)
			var progress []int64
			var resumed int64 = -1
			var in *Incoming
			sendErr, recvErr := run(t,
				f.send(SendOptions{ChunkSize: tc.chunk, Progress: func(n int64) { progress = append(progress, n) }}, &resumed),
				receiveInto(dir, Receiver{MaxSize: 8 << 20, CheckpointEvery: 256 << 10}, &in))
			if sendErr != nil || recvErr != nil {
				t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
			}
			if resumed != 0 || in.ResumedFrom != 0 {
				t.Errorf("got resumed from %d (sender) and %d (receiver), want 0", resumed, in.ResumedFrom)
			}
			if in.Name != f.name || in.Size != f.size() || in.SHA256 != f.sum {
				t.Errorf("got Incoming %q, %d bytes, %x; want %q, %d, %x", in.Name, in.Size, in.SHA256, f.name, f.size(), f.sum)
			}
			path := filepath.Join(dir, f.name)
			if in.Path() != path {
				t.Errorf("got Path %q, want %q", in.Path(), path)
			}
			checkFile(t, path, f.data)
			if got := dirNames(t, dir); len(got) != 1 {
				t.Errorf("got %q in the directory, want only the file (no partial, no checkpoint)", got)
			}
			if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != dirMode {
				t.Errorf("created directory: got %v, %v; want mode %v", st.Mode().Perm(), err, fs.FileMode(dirMode))
			}
			if tc.size > 0 && (len(progress) == 0 || progress[len(progress)-1] != f.size()) {
				t.Errorf("progress: got %v, want it to end at %d", progress, f.size())
			}
		})
	}
}

// TestTransferResume interrupts a transfer half-way, then checks that the next
// attempt resumes from the checkpoint and produces the right file.
func TestTransferResume(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("thesis.tar", 1<<20+123)
	r := Receiver{PartialDir: dir, MaxSize: 8 << 20, CheckpointEvery: 64 << 10}

	// First attempt: the sender's connection dies after about half the bytes.
	a, b := connPair(t)
	done := make(chan error, 1)
	go func() { _, err := r.Receive(b); done <- err }()
	_, sendErr := SendFile(a, f.name, bytes.NewReader(f.data), f.size(), f.sum, SendOptions{
		ChunkSize: 16 << 10,
		Progress: func(sent int64) {
			if sent >= f.size()/2 {
				a.Close()
			}
		},
	})
	recvErr := <-done
	if sendErr == nil || recvErr == nil {
		t.Fatalf("interrupted transfer: got send error %v and receive error %v, want both to fail", sendErr, recvErr)
	}
	part, ckpt := partialPaths(dir, f)
	checkpoint, ok, err := readCheckpoint(ckpt, f.size())
	if err != nil || !ok {
		t.Fatalf("reading the checkpoint: %v, exists %v", err, ok)
	}
	if checkpoint <= 0 || checkpoint >= f.size() {
		t.Fatalf("got checkpoint %d, want one inside 0..%d", checkpoint, f.size())
	}
	checkFile(t, part, f.data[:checkpoint])
	checkFile(t, ckpt, []byte(fmt.Sprintf(checkpointFormat, f.size(), checkpoint)))

	// Second attempt, on a new connection.
	var resumed int64
	var in *Incoming
	sendErr, recvErr = run(t, f.send(SendOptions{}, &resumed), receiveInto(dir, r, &in))
	if sendErr != nil || recvErr != nil {
		t.Fatalf("resumed transfer: send: %v; receive: %v", sendErr, recvErr)
	}
	if resumed != checkpoint || in.ResumedFrom != checkpoint {
		t.Errorf("got resumed from %d (sender) and %d (receiver), want the checkpoint %d", resumed, in.ResumedFrom, checkpoint)
	}
	checkFile(t, filepath.Join(dir, f.name), f.data)
	if got := dirNames(t, dir); len(got) != 1 {
		t.Errorf("got %q in the directory, want only the file", got)
	}
}

func TestTransferCorruptPartialBeyondCheckpoint(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("data.bin", 300_000)
	const checkpoint = 100_000
	part, ckpt := partialPaths(dir, f)
	junk := append(append([]byte(nil), f.data[:checkpoint]...), bytes.Repeat([]byte{0xee}, 150_000)...)
	if err := os.WriteFile(part, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeCheckpoint(ckpt, f.size(), checkpoint); err != nil {
		t.Fatal(err)
	}
	var resumed int64
	sendErr, recvErr := run(t, f.send(SendOptions{}, &resumed), receiveInto(dir, Receiver{MaxSize: 1 << 20}, nil))
	if sendErr != nil || recvErr != nil {
		t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
	}
	if resumed != checkpoint {
		t.Errorf("got resumed from %d, want the checkpoint %d", resumed, checkpoint)
	}
	checkFile(t, filepath.Join(dir, f.name), f.data)
}

func TestTransferUntrustedCheckpoint(t *testing.T) {
	f := newTestFile("data.bin", 300_000)
	for _, tc := range []struct {
		name string
		part []byte
		ckpt string
	}{
		{"beyond the partial file", f.data[:1000], fmt.Sprintf(checkpointFormat, f.size(), 200_000)},
		{"other size", f.data[:200_000], fmt.Sprintf(checkpointFormat, f.size()+1, 100_000)},
		{"garbage", f.data[:200_000], "offset=100000\n"},
		{"trailing garbage", f.data[:200_000], fmt.Sprintf(checkpointFormat, f.size(), 100_000) + "x"},
		{"beyond the size", f.data, fmt.Sprintf(checkpointFormat, f.size(), f.size()+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			part, ckpt := partialPaths(dir, f)
			os.WriteFile(part, tc.part, 0o600)
			os.WriteFile(ckpt, []byte(tc.ckpt), 0o600)
			var resumed int64 = -1
			sendErr, recvErr := run(t, f.send(SendOptions{}, &resumed), receiveInto(dir, Receiver{MaxSize: 1 << 20}, nil))
			if sendErr != nil || recvErr != nil {
				t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
			}
			if resumed != 0 {
				t.Errorf("got resumed from %d, want 0", resumed)
			}
			checkFile(t, filepath.Join(dir, f.name), f.data)
		})
	}
}

// TestTransferCorruptPrefix damages the partial file before its checkpoint: the
// hash check catches it, the partial transfer is discarded, and the next attempt
// starts from 0.
func TestTransferCorruptPrefix(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("data.bin", 300_000)
	part, ckpt := partialPaths(dir, f)
	bad := append([]byte(nil), f.data[:100_000]...)
	bad[500] ^= 1
	os.WriteFile(part, bad, 0o600)
	writeCheckpoint(ckpt, f.size(), 100_000)
	r := Receiver{MaxSize: 1 << 20}

	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receiveInto(dir, r, nil))
	checkPeerCode(t, sendErr, CodeFileMismatch)
	if !isRefusal(recvErr, CodeFileMismatch) {
		t.Fatalf("receive: got %v, want a file-mismatch refusal", recvErr)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Fatalf("got %q in the directory, want nothing", got)
	}
	var resumed int64 = -1
	sendErr, recvErr = run(t, f.send(SendOptions{}, &resumed), receiveInto(dir, r, nil))
	if sendErr != nil || recvErr != nil || resumed != 0 {
		t.Fatalf("retry: send: %v; receive: %v; resumed from %d, want 0", sendErr, recvErr, resumed)
	}
	checkFile(t, filepath.Join(dir, f.name), f.data)
}

func TestTransferHashMismatch(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("liar.txt", 200_000)
	f.sum[0] ^= 0xff // the sender lies about the SHA-256
	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receiveInto(dir, Receiver{MaxSize: 1 << 20, CheckpointEvery: 64 << 10}, nil))
	checkPeerCode(t, sendErr, CodeFileMismatch)
	if !isRefusal(recvErr, CodeFileMismatch) || CodeOf(recvErr) != CodeFileMismatch {
		t.Fatalf("receive: got %v, want a file-mismatch refusal", recvErr)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("got %q in the directory, want nothing committed and no partial left", got)
	}
}

func TestTransferTooLarge(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("big.iso", 1001)
	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receiveInto(dir, Receiver{MaxSize: 1000}, nil))
	checkPeerCode(t, sendErr, CodeFileTooLarge)
	var tooLarge *Refusal
	if !errors.As(recvErr, &tooLarge) || tooLarge.Code != CodeFileTooLarge || tooLarge.Text != `file "big.iso" of 1001 bytes exceeds the limit of 1000 bytes` {
		t.Fatalf("receive: got %v, want a file-too-large refusal for 1001 bytes over 1000", recvErr)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("got %q in the directory, want nothing", got)
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

			// The receiver refuses with bad-file-name.
			root := t.TempDir()
			dir := filepath.Join(root, "in")
			sendErr, recvErr := run(t, func(c *Conn) error {
				if err := c.WriteMessage(&FileHeader{Name: tc.name, Size: 1}); err != nil {
					return err
				}
				_, err := Expect[*FileOffset](c.ReadMessage())
				return err
			}, receiveInto(dir, Receiver{MaxSize: 100}, nil))
			checkPeerCode(t, sendErr, CodeBadFileName)
			var bad *Refusal
			if !errors.As(recvErr, &bad) || bad.Code != CodeBadFileName || !strings.HasPrefix(bad.Text, fmt.Sprintf("bad file name %q: ", tc.name)) {
				t.Errorf("receive: got %v, want a bad-file-name refusal naming %q", recvErr, tc.name)
			}
			if got := dirNames(t, root); len(got) != 0 {
				t.Errorf("the receiver created %q, want nothing", got)
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
			sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receiveInto(t.TempDir(), Receiver{MaxSize: 100, Allow: allow}, nil))
			checkPeerCode(t, sendErr, tc.want)
			if recvErr == nil || seen != f.name {
				t.Errorf("receive: got %v with Allow called on %q, want an error for %q", recvErr, seen, f.name)
			}
		})
	}
}

func TestTransferBusy(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("same.txt", 10)
	part, _ := partialPaths(dir, f)
	inProgress.Lock()
	inProgress.paths[part] = true
	inProgress.Unlock()
	defer func() {
		inProgress.Lock()
		delete(inProgress.paths, part)
		inProgress.Unlock()
	}()
	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receiveInto(dir, Receiver{MaxSize: 100}, nil))
	checkPeerCode(t, sendErr, CodeBusy)
	if !isRefusal(recvErr, CodeBusy) {
		t.Errorf("receive: got %v, want a busy refusal", recvErr)
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
		name     string
		msgs     []Message
		code     Code
		leftover bool // the partial transfer is kept
	}{
		{"Data past the size", []Message{&Data{Bytes: f.data[:4]}, &Data{Bytes: make([]byte, 7)}}, CodeFileMismatch, false},
		{"FileAck instead of Data", []Message{&Data{Bytes: f.data[:4]}, &FileAck{}}, CodeUnexpectedMessage, true},
		{"second FileHeader", []Message{&FileHeader{Name: f.name}}, CodeUnexpectedMessage, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sendErr, recvErr := run(t, rawSender(f, tc.msgs...), receiveInto(dir, Receiver{MaxSize: 100}, nil))
			checkPeerCode(t, sendErr, tc.code)
			if !isRefusal(recvErr, tc.code) {
				t.Errorf("receive: got %v, want a refusal with code %v", recvErr, tc.code)
			}
			if got := dirNames(t, dir); (len(got) != 0) != tc.leftover {
				t.Errorf("got %q in the directory, want a partial transfer kept: %v", got, tc.leftover)
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
		}, receiveInto(t.TempDir(), Receiver{MaxSize: 100}, nil))
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
		}, receiveInto(t.TempDir(), Receiver{MaxSize: 100}, nil))
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
		}, receiveInto(t.TempDir(), Receiver{MaxSize: 100}, nil))
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
	dir := t.TempDir()
	f := newTestFile("x.bin", 100_000)
	receipt := &Receipt{ID: "receipt", SID: "a", Serial: []byte{1}, Name: f.name, Size: uint64(f.size()), SHA256: f.sum, Signature: []byte{2}}
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
		r := Receiver{PartialDir: dir, MaxSize: 1 << 20}
		in, err := r.Receive(c)
		if err != nil {
			return err
		}
		if err := in.CommitTo(filepath.Join(dir, "stored")); err != nil {
			return err
		}
		return c.WriteMessage(receipt)
	})
	if sendErr != nil || recvErr != nil {
		t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
	}
	checkFile(t, filepath.Join(dir, "stored"), f.data)
}

func TestIncomingDiscard(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("x.bin", 100_000)
	var in *Incoming
	sendErr, recvErr := run(t, f.send(SendOptions{SkipAck: true}, nil), func(c *Conn) error {
		r := Receiver{PartialDir: dir, MaxSize: 1 << 20, CheckpointEvery: 10_000}
		var err error
		in, err = r.Receive(c)
		return err
	})
	if sendErr != nil || recvErr != nil {
		t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
	}
	part, ckpt := partialPaths(dir, f)
	if in.Path() != part {
		t.Errorf("got Path %q, want the partial file %q", in.Path(), part)
	}
	checkFile(t, part, f.data)
	if _, err := os.Stat(ckpt); err != nil {
		t.Errorf("checkpoint: %v", err)
	}
	if err := in.Discard(); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("got %q after Discard, want nothing", got)
	}
}

func TestReceiverConfig(t *testing.T) {
	for _, r := range []Receiver{{MaxSize: 10}, {PartialDir: t.TempDir()}} {
		q := &msgQueue{}
		if _, err := r.Receive(q); err == nil {
			t.Errorf("Receive with %+v: got no error", r)
		}
	}
}

// failingFile fails writes with ENOSPC once budget bytes have been written.
type failingFile struct {
	*os.File
	budget *int64
}

func (f failingFile) WriteAt(p []byte, off int64) (int, error) {
	if int64(len(p)) > *f.budget {
		n, _ := f.File.WriteAt(p[:*f.budget], off)
		*f.budget = 0
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	*f.budget -= int64(len(p))
	return f.File.WriteAt(p, off)
}

// TestTransferDiskFull fills the disk mid-transfer: the sender hears storage,
// the checkpoint never claims more than was written and fsynced, and a retry
// resumes from it.
func TestTransferDiskFull(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("x.bin", 1<<20)
	const budget = 300_000
	left := int64(budget)
	full := Receiver{MaxSize: 2 << 20, CheckpointEvery: 64 << 10, openFile: func(path string) (partialFile, error) {
		file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
		if err != nil {
			return nil, err
		}
		return failingFile{file, &left}, nil
	}}
	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receiveInto(dir, full, nil))
	checkPeerCode(t, sendErr, CodeStorage)
	if !isRefusal(recvErr, CodeStorage) || !errors.Is(recvErr, syscall.ENOSPC) {
		t.Fatalf("receive: got %v, want a storage refusal matching ENOSPC", recvErr)
	}
	if CodeOf(recvErr) != CodeStorage {
		t.Errorf("CodeOf: got %v, want storage", CodeOf(recvErr))
	}
	if strings.Contains(sendErr.Error(), dir) {
		t.Errorf("the sender learned the receiver's paths: %v", sendErr)
	}
	_, ckpt := partialPaths(dir, f)
	checkpoint, _, err := readCheckpoint(ckpt, f.size())
	if err != nil {
		t.Fatal(err)
	}
	if checkpoint <= 0 || checkpoint > budget {
		t.Fatalf("got checkpoint %d, want one in 1..%d (what was written)", checkpoint, budget)
	}

	var resumed int64
	sendErr, recvErr = run(t, f.send(SendOptions{}, &resumed), receiveInto(dir, Receiver{MaxSize: 2 << 20}, nil))
	if sendErr != nil || recvErr != nil {
		t.Fatalf("retry: send: %v; receive: %v", sendErr, recvErr)
	}
	if resumed != checkpoint {
		t.Errorf("got resumed from %d, want the checkpoint %d", resumed, checkpoint)
	}
	checkFile(t, filepath.Join(dir, f.name), f.data)
}

func TestTransferReadOnlyPartialDir(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("x.bin", 1000)
	rofs := Receiver{MaxSize: 2 << 20, openFile: func(path string) (partialFile, error) {
		return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EROFS}
	}}
	sendErr, recvErr := run(t, f.send(SendOptions{}, nil), receiveInto(dir, rofs, nil))
	checkPeerCode(t, sendErr, CodeStorage)
	if want := "read-only file system"; !strings.Contains(sendErr.Error(), want) {
		t.Errorf("got %v, want the reason %q", sendErr, want)
	}
	if !isRefusal(recvErr, CodeStorage) || !errors.Is(recvErr, syscall.EROFS) {
		t.Fatalf("receive: got %v, want a storage refusal matching EROFS", recvErr)
	}
}

func TestHashFile(t *testing.T) {
	f := newTestFile("x", 100_000)
	sum, size, err := HashFile(bytes.NewReader(f.data))
	if err != nil || sum != f.sum || size != f.size() {
		t.Fatalf("got %x, %d, %v; want %x, %d", sum, size, err, f.sum, f.size())
	}
}

// TestTransferInMemory checks that a file up to Receiver.InMemory never
// touches the partial directory, arrives whole, and is written durably only
// when placed; a larger one takes the partial-file path.
func TestTransferInMemory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		size     int
		inMemory bool
	}{
		{"empty", 0, true},
		{"message", 290, true},
		{"two chunks", DefaultChunkSize + 1, true},
		{"limit", 64 << 10, true},
		{"above the limit", 64<<10 + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			partial := filepath.Join(t.TempDir(), "partial")
			f := newTestFile("message.txt", tc.size)
			var in *Incoming
			sendErr, recvErr := run(t, f.send(SendOptions{SkipAck: true}, nil), func(c *Conn) error {
				var err error
				in, err = (&Receiver{PartialDir: partial, MaxSize: 1 << 20, InMemory: 64 << 10}).Receive(c)
				return err
			})
			if sendErr != nil || recvErr != nil {
				t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
			}
			if got := in.Data() != nil || in.Path() == ""; got != tc.inMemory {
				t.Fatalf("held in memory: got %v (path %q) want %v", got, in.Path(), tc.inMemory)
			}
			if tc.inMemory {
				if !bytes.Equal(in.Data(), f.data) && tc.size > 0 {
					t.Fatal("in-memory content differs from what was sent")
				}
				if _, err := os.Stat(partial); !os.IsNotExist(err) {
					t.Errorf("the partial directory was touched: %v", err)
				}
			}
			dst := filepath.Join(t.TempDir(), "final.dat")
			if err := in.CommitTo(dst); err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, f.data)
			if got := dirNames(t, filepath.Dir(dst)); len(got) != 1 {
				t.Errorf("got %q beside the placed file, want nothing else", got)
			}
			if in.Path() != dst || in.Data() != nil {
				t.Errorf("after CommitTo: path %q, data held %v", in.Path(), in.Data() != nil)
			}
		})
	}
}

func TestTransferInMemoryRefusals(t *testing.T) {
	f := newTestFile("message.txt", 1000)
	lie := f
	lie.sum[0] ^= 1
	tests := []struct {
		name string
		send func(*Conn) error
		want Code
	}{
		{"hash mismatch", lie.send(SendOptions{}, nil), CodeFileMismatch},
		{"data past the size", rawSender(f, &Data{Bytes: make([]byte, 1001)}), CodeFileMismatch},
		{"wrong message", rawSender(f, &FileAck{}), CodeUnexpectedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			partial := filepath.Join(t.TempDir(), "partial")
			sendErr, recvErr := run(t, tt.send, func(c *Conn) error {
				_, err := (&Receiver{PartialDir: partial, MaxSize: 1 << 20, InMemory: 64 << 10}).Receive(c)
				return err
			})
			if recvErr == nil {
				t.Fatal("the receiver accepted")
			}
			checkPeerCode(t, sendErr, tt.want)
			if _, err := os.Stat(partial); !os.IsNotExist(err) {
				t.Errorf("the partial directory was touched: %v", err)
			}
		})
	}
}
