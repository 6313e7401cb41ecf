package board

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pkiboard/internal/durable"
	"pkiboard/wire"
)

// The tests of this file run package wire's Receiver over the board's sinks:
// partial files on disk, and memory for small files.

// transferOptions let full-size Data frames through.
var transferOptions = wire.Options{MaxFrame: wire.MaxDataChunk + 1, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}

// tcpPair returns the two ends of a loopback TCP connection, closed when the
// test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := <-accepted
	if r.err != nil {
		client.Close()
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() {
		client.Close()
		r.c.Close()
	})
	return client, r.c
}

// connPair returns two Conns over loopback TCP.
func connPair(t *testing.T) (sender, receiver *wire.Conn) {
	a, b := tcpPair(t)
	return wire.NewConn(a, transferOptions), wire.NewConn(b, transferOptions)
}

// run runs recv on the receiving end in a goroutine and send on the sending end,
// each closing its end when done, and returns both errors.
func run(t *testing.T, send func(*wire.Conn) error, recv func(*wire.Conn) error) (sendErr, recvErr error) {
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

func payload(n int) []byte {
	p := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)}).Read(p)
	return p
}

func newTestFile(name string, n int) testFile {
	data := payload(n)
	return testFile{name: name, data: data, sum: sha256.Sum256(data)}
}

func (f testFile) size() int64 { return int64(len(f.data)) }

// send sends f with wire.SendFile.
func (f testFile) send(opt wire.SendOptions, resumed *int64) func(*wire.Conn) error {
	return func(c *wire.Conn) error {
		off, err := wire.SendFile(c, f.name, bytes.NewReader(f.data), f.size(), f.sum, opt)
		if resumed != nil {
			*resumed = off
		}
		return err
	}
}

// receiveInto receives one file with p's receiver, places it at
// filepath.Join(dir, name) and fsyncs dir, and answers FileAck; a failure to
// place it is answered storage. It is what ReceiveFileInto did in package
// wire before the partial files moved here.
func receiveInto(p *partials, dir string, maxSize int64, got **wire.Received) func(*wire.Conn) error {
	return func(c *wire.Conn) error {
		in, err := p.receiver(maxSize).Receive(c)
		if got != nil {
			*got = in
		}
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return answer(c, err)
		}
		if err := place(in, filepath.Join(dir, in.Name)); err != nil {
			return answer(c, err)
		}
		if err := durable.SyncDir(dir); err != nil {
			return answer(c, err)
		}
		return c.WriteMessage(new(wire.FileAck))
	}
}

// answer answers a storage failure and returns it.
func answer(c *wire.Conn, err error) error {
	wire.Answer(c, wire.Refusef(wire.CodeStorage, "could not store the file (%s)", wire.StorageReason(err)))
	return err
}

// partialPaths returns the partial and checkpoint files of f in dir.
func partialPaths(dir string, f testFile) (part, ckpt string) {
	base := filepath.Join(dir, "."+hex.EncodeToString(f.sum[:])+"."+f.name)
	return base + partSuffix, base + checkpointSuffix
}

// checkPeerCode checks that err is the peer's *wire.Error with code want.
func checkPeerCode(t *testing.T, err error, want wire.Code) {
	t.Helper()
	var pe *wire.Error
	if !errors.As(err, &pe) || pe.Code != want {
		t.Fatalf("got %v, want the peer's Error with code %v", err, want)
	}
}

// isRefusal reports whether err's chain holds a *wire.Refusal of code.
func isRefusal(err error, code wire.Code) bool {
	var r *wire.Refusal
	return errors.As(err, &r) && r.Code == code
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

func TestPartialTransferFull(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		chunk int
	}{
		{"empty", 0, 0},
		{"one byte", 1, 0},
		{"one chunk", wire.DefaultChunkSize, 0},
		{"odd size", 1<<20 + 7, 0},
		{"full chunks", 1<<20 + 7, wire.MaxDataChunk},
		{"small chunks", 100_000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "incoming")
			f := newTestFile("report-1.pdf", tc.size)
			var progress []int64
			var resumed int64 = -1
			var in *wire.Received
			sendErr, recvErr := run(t,
				f.send(wire.SendOptions{ChunkSize: tc.chunk, Progress: func(n int64) { progress = append(progress, n) }}, &resumed),
				receiveInto(&partials{dir: dir, every: 256 << 10}, dir, 8<<20, &in))
			if sendErr != nil || recvErr != nil {
				t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
			}
			if resumed != 0 || in.ResumedFrom != 0 {
				t.Errorf("got resumed from %d (sender) and %d (receiver), want 0", resumed, in.ResumedFrom)
			}
			if in.Name != f.name || in.Size != f.size() || in.SHA256 != f.sum {
				t.Errorf("got Received %q, %d bytes, %x; want %q, %d, %x", in.Name, in.Size, in.SHA256, f.name, f.size(), f.sum)
			}
			path := filepath.Join(dir, f.name)
			if sink, ok := in.Sink.(*partialSink); !ok || sink.part != path {
				t.Errorf("got sink %T, want the partial file placed at %q", in.Sink, path)
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

// TestPartialTransferResume interrupts a transfer half-way, then checks that
// the next attempt resumes from the checkpoint and produces the right file.
func TestPartialTransferResume(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("thesis.tar", 1<<20+123)
	p := &partials{dir: dir, every: 64 << 10}

	// First attempt: the sender's connection dies after about half the bytes.
	a, b := connPair(t)
	done := make(chan error, 1)
	go func() { _, err := p.receiver(8 << 20).Receive(b); done <- err }()
	_, sendErr := wire.SendFile(a, f.name, bytes.NewReader(f.data), f.size(), f.sum, wire.SendOptions{
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
	var in *wire.Received
	sendErr, recvErr = run(t, f.send(wire.SendOptions{}, &resumed), receiveInto(p, dir, 8<<20, &in))
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

func TestPartialCorruptBeyondCheckpoint(t *testing.T) {
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
	sendErr, recvErr := run(t, f.send(wire.SendOptions{}, &resumed), receiveInto(&partials{dir: dir}, dir, 1<<20, nil))
	if sendErr != nil || recvErr != nil {
		t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
	}
	if resumed != checkpoint {
		t.Errorf("got resumed from %d, want the checkpoint %d", resumed, checkpoint)
	}
	checkFile(t, filepath.Join(dir, f.name), f.data)
}

func TestPartialUntrustedCheckpoint(t *testing.T) {
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
			sendErr, recvErr := run(t, f.send(wire.SendOptions{}, &resumed), receiveInto(&partials{dir: dir}, dir, 1<<20, nil))
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

// TestPartialCorruptPrefix damages the partial file before its checkpoint: the
// hash check catches it, the partial transfer is discarded, and the next
// attempt starts from 0.
func TestPartialCorruptPrefix(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("data.bin", 300_000)
	part, ckpt := partialPaths(dir, f)
	bad := append([]byte(nil), f.data[:100_000]...)
	bad[500] ^= 1
	os.WriteFile(part, bad, 0o600)
	writeCheckpoint(ckpt, f.size(), 100_000)
	p := &partials{dir: dir}

	sendErr, recvErr := run(t, f.send(wire.SendOptions{}, nil), receiveInto(p, dir, 1<<20, nil))
	checkPeerCode(t, sendErr, wire.CodeFileMismatch)
	if !isRefusal(recvErr, wire.CodeFileMismatch) {
		t.Fatalf("receive: got %v, want a file-mismatch refusal", recvErr)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Fatalf("got %q in the directory, want nothing", got)
	}
	var resumed int64 = -1
	sendErr, recvErr = run(t, f.send(wire.SendOptions{}, &resumed), receiveInto(p, dir, 1<<20, nil))
	if sendErr != nil || recvErr != nil || resumed != 0 {
		t.Fatalf("retry: send: %v; receive: %v; resumed from %d, want 0", sendErr, recvErr, resumed)
	}
	checkFile(t, filepath.Join(dir, f.name), f.data)
}

func TestPartialHashMismatch(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("liar.txt", 200_000)
	f.sum[0] ^= 0xff // the sender lies about the SHA-256
	sendErr, recvErr := run(t, f.send(wire.SendOptions{}, nil), receiveInto(&partials{dir: dir, every: 64 << 10}, dir, 1<<20, nil))
	checkPeerCode(t, sendErr, wire.CodeFileMismatch)
	if !isRefusal(recvErr, wire.CodeFileMismatch) || wire.CodeOf(recvErr) != wire.CodeFileMismatch {
		t.Fatalf("receive: got %v, want a file-mismatch refusal", recvErr)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("got %q in the directory, want nothing committed and no partial left", got)
	}
}

func TestPartialTooLarge(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("big.iso", 1001)
	sendErr, recvErr := run(t, f.send(wire.SendOptions{}, nil), receiveInto(&partials{dir: dir}, dir, 1000, nil))
	checkPeerCode(t, sendErr, wire.CodeFileTooLarge)
	if !isRefusal(recvErr, wire.CodeFileTooLarge) {
		t.Fatalf("receive: got %v, want a file-too-large refusal", recvErr)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("got %q in the directory, want nothing", got)
	}
}

// hostileNames are names a FileHeader may carry that ValidName refuses.
var hostileNames = []string{
	"../../etc/x", "/etc/passwd", "a\x00b", "", ".", "..", ".hidden", "-rf", "a/b", `a\b`,
	strings.Repeat("a", wire.NameMaxLen+1), "a b", "a\nb", "résumé.pdf", "a:b", "*",
}

// TestPartialHostileNames checks that a name ValidName refuses is refused
// before anything is created on disk.
func TestPartialHostileNames(t *testing.T) {
	for _, name := range hostileNames {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "in")
			sendErr, recvErr := run(t, func(c *wire.Conn) error {
				if err := c.WriteMessage(&wire.FileHeader{Name: name, Size: 1}); err != nil {
					return err
				}
				_, err := wire.Expect[*wire.FileOffset](c.ReadMessage())
				return err
			}, receiveInto(&partials{dir: dir}, dir, 100, nil))
			checkPeerCode(t, sendErr, wire.CodeBadFileName)
			if !isRefusal(recvErr, wire.CodeBadFileName) {
				t.Errorf("receive: got %v, want a bad-file-name refusal", recvErr)
			}
			if got := dirNames(t, root); len(got) != 0 {
				t.Errorf("the receiver created %q, want nothing", got)
			}
		})
	}
}

func TestPartialBusy(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("same.txt", 10)
	part, _ := partialPaths(dir, f)
	inProgress.Lock()
	inProgress.paths[part] = f.size()
	inProgress.Unlock()
	defer func() {
		inProgress.Lock()
		delete(inProgress.paths, part)
		inProgress.Unlock()
	}()
	sendErr, recvErr := run(t, f.send(wire.SendOptions{}, nil), receiveInto(&partials{dir: dir}, dir, 100, nil))
	checkPeerCode(t, sendErr, wire.CodeBusy)
	if !isRefusal(recvErr, wire.CodeBusy) {
		t.Errorf("receive: got %v, want a busy refusal", recvErr)
	}
	var refusal *wire.Refusal
	if errors.As(recvErr, &refusal) && refusal.Text != `a transfer of "same.txt" is already in progress; try again shortly` {
		t.Errorf("got the text %q", refusal.Text)
	}
}

// rawSender returns a sender that sends a FileHeader for f, reads the offset,
// then sends msgs and reads the receiver's answer.
func rawSender(f testFile, msgs ...wire.Message) func(*wire.Conn) error {
	return func(c *wire.Conn) error {
		if err := c.WriteMessage(&wire.FileHeader{Name: f.name, Size: uint64(f.size()), SHA256: f.sum}); err != nil {
			return err
		}
		if _, err := wire.Expect[*wire.FileOffset](c.ReadMessage()); err != nil {
			return err
		}
		for _, m := range msgs {
			if err := c.WriteMessage(m); err != nil {
				return err
			}
		}
		_, err := wire.Expect[*wire.FileAck](c.ReadMessage())
		return err
	}
}

// TestPartialProtocolViolations checks which violations keep the partial
// transfer for a resume and which discard it.
func TestPartialProtocolViolations(t *testing.T) {
	f := newTestFile("x.bin", 10)
	for _, tc := range []struct {
		name     string
		msgs     []wire.Message
		code     wire.Code
		leftover bool // the partial transfer is kept
	}{
		{"Data past the size", []wire.Message{&wire.Data{Bytes: f.data[:4]}, &wire.Data{Bytes: make([]byte, 7)}}, wire.CodeFileMismatch, false},
		{"FileAck instead of Data", []wire.Message{&wire.Data{Bytes: f.data[:4]}, &wire.FileAck{}}, wire.CodeUnexpectedMessage, true},
		{"second FileHeader", []wire.Message{&wire.FileHeader{Name: f.name}}, wire.CodeUnexpectedMessage, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sendErr, recvErr := run(t, rawSender(f, tc.msgs...), receiveInto(&partials{dir: dir}, dir, 100, nil))
			checkPeerCode(t, sendErr, tc.code)
			if !isRefusal(recvErr, tc.code) {
				t.Errorf("receive: got %v, want a refusal with code %v", recvErr, tc.code)
			}
			if got := dirNames(t, dir); (len(got) != 0) != tc.leftover {
				t.Errorf("got %q in the directory, want a partial transfer kept: %v", got, tc.leftover)
			}
		})
	}
}

// TestPartialDiscard checks that a received file left in its partial file,
// with its checkpoint, is deleted by discard.
func TestPartialDiscard(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("x.bin", 100_000)
	var in *wire.Received
	sendErr, recvErr := run(t, f.send(wire.SendOptions{SkipAck: true}, nil), func(c *wire.Conn) error {
		var err error
		in, err = (&partials{dir: dir, every: 10_000}).receiver(1 << 20).Receive(c)
		return err
	})
	if sendErr != nil || recvErr != nil {
		t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
	}
	part, ckpt := partialPaths(dir, f)
	if sink, ok := in.Sink.(*partialSink); !ok || sink.part != part {
		t.Errorf("got sink %T, want the partial file %q", in.Sink, part)
	}
	checkFile(t, part, f.data)
	if _, err := os.Stat(ckpt); err != nil {
		t.Errorf("checkpoint: %v", err)
	}
	discard(in, filepath.Join(t.TempDir(), "never-placed"))
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("got %q after discard, want nothing", got)
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

// TestPartialDiskFull fills the disk mid-transfer: the sender hears storage,
// the checkpoint never claims more than was written and fsynced, and a retry
// resumes from it.
func TestPartialDiskFull(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("x.bin", 1<<20)
	const budget = 300_000
	left := int64(budget)
	full := &partials{dir: dir, every: 64 << 10, openFile: func(path string) (partialFile, error) {
		file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
		if err != nil {
			return nil, err
		}
		return failingFile{file, &left}, nil
	}}
	sendErr, recvErr := run(t, f.send(wire.SendOptions{}, nil), receiveInto(full, dir, 2<<20, nil))
	checkPeerCode(t, sendErr, wire.CodeStorage)
	if !isRefusal(recvErr, wire.CodeStorage) || !errors.Is(recvErr, syscall.ENOSPC) {
		t.Fatalf("receive: got %v, want a storage refusal matching ENOSPC", recvErr)
	}
	if wire.CodeOf(recvErr) != wire.CodeStorage {
		t.Errorf("CodeOf: got %v, want storage", wire.CodeOf(recvErr))
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
	sendErr, recvErr = run(t, f.send(wire.SendOptions{}, &resumed), receiveInto(&partials{dir: dir}, dir, 2<<20, nil))
	if sendErr != nil || recvErr != nil {
		t.Fatalf("retry: send: %v; receive: %v", sendErr, recvErr)
	}
	if resumed != checkpoint {
		t.Errorf("got resumed from %d, want the checkpoint %d", resumed, checkpoint)
	}
	checkFile(t, filepath.Join(dir, f.name), f.data)
}

func TestPartialReadOnlyDir(t *testing.T) {
	dir := t.TempDir()
	f := newTestFile("x.bin", 1000)
	rofs := &partials{dir: dir, openFile: func(path string) (partialFile, error) {
		return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EROFS}
	}}
	sendErr, recvErr := run(t, f.send(wire.SendOptions{}, nil), receiveInto(rofs, dir, 2<<20, nil))
	checkPeerCode(t, sendErr, wire.CodeStorage)
	if want := "read-only file system"; !strings.Contains(sendErr.Error(), want) {
		t.Errorf("got %v, want the reason %q", sendErr, want)
	}
	if !isRefusal(recvErr, wire.CodeStorage) || !errors.Is(recvErr, syscall.EROFS) {
		t.Fatalf("receive: got %v, want a storage refusal matching EROFS", recvErr)
	}
	inProgress.Lock()
	claimed := len(inProgress.paths)
	inProgress.Unlock()
	if claimed != 0 {
		t.Errorf("%d partial files still claimed after a failed open", claimed)
	}
}

// TestPartialInMemory checks that a file up to partials.inMemory never
// touches the partial directory, arrives whole, and is written durably only
// when placed; a larger one takes the partial-file path.
func TestPartialInMemory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		size     int
		inMemory bool
	}{
		{"empty", 0, true},
		{"message", 290, true},
		{"two chunks", wire.DefaultChunkSize + 1, true},
		{"limit", 64 << 10, true},
		{"above the limit", 64<<10 + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			partial := filepath.Join(t.TempDir(), "partial")
			f := newTestFile("message.txt", tc.size)
			var in *wire.Received
			sendErr, recvErr := run(t, f.send(wire.SendOptions{SkipAck: true}, nil), func(c *wire.Conn) error {
				var err error
				in, err = (&partials{dir: partial, inMemory: 64 << 10}).receiver(1 << 20).Receive(c)
				return err
			})
			if sendErr != nil || recvErr != nil {
				t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
			}
			mem, held := in.Sink.(*wire.Memory)
			if held != tc.inMemory {
				t.Fatalf("held in memory: got %v (sink %T) want %v", held, in.Sink, tc.inMemory)
			}
			if tc.inMemory {
				if !bytes.Equal(mem.Bytes(), f.data) && tc.size > 0 {
					t.Fatal("in-memory content differs from what was sent")
				}
				if _, err := os.Stat(partial); !os.IsNotExist(err) {
					t.Errorf("the partial directory was touched: %v", err)
				}
			}
			dst := filepath.Join(t.TempDir(), "final.dat")
			if err := place(in, dst); err != nil {
				t.Fatal(err)
			}
			if err := durable.SyncDir(filepath.Dir(dst)); err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, f.data)
			if got := dirNames(t, filepath.Dir(dst)); len(got) != 1 {
				t.Errorf("got %q beside the placed file, want nothing else", got)
			}
			if sink, ok := in.Sink.(*partialSink); ok && (sink.part != dst || sink.ckpt != "") {
				t.Errorf("after place: the sink's file is %q, its checkpoint %q", sink.part, sink.ckpt)
			}
			if got := dirNames(t, partial); len(got) != 0 {
				t.Errorf("after place: got %q in the partial directory, want nothing", got)
			}
		})
	}
}

func TestPartialInMemoryRefusals(t *testing.T) {
	f := newTestFile("message.txt", 1000)
	lie := f
	lie.sum[0] ^= 1
	tests := []struct {
		name string
		send func(*wire.Conn) error
		want wire.Code
	}{
		{"hash mismatch", lie.send(wire.SendOptions{}, nil), wire.CodeFileMismatch},
		{"data past the size", rawSender(f, &wire.Data{Bytes: make([]byte, 1001)}), wire.CodeFileMismatch},
		{"wrong message", rawSender(f, &wire.FileAck{}), wire.CodeUnexpectedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			partial := filepath.Join(t.TempDir(), "partial")
			sendErr, recvErr := run(t, tt.send, func(c *wire.Conn) error {
				_, err := (&partials{dir: partial, inMemory: 64 << 10}).receiver(1 << 20).Receive(c)
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
