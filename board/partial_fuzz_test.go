package board

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"

	"pkiboard/internal/fuzzseed"
	"pkiboard/wire"
)

var update = flag.Bool("update", false, "rewrite the seed corpora under testdata/")

// The receiver of FuzzReceivePartial: small limits, so that the fuzzer reaches
// them. The inputs are those of package wire's FuzzReceive.
const (
	fuzzRecvMaxSize    = 4096 // file-too-large above it
	fuzzRecvInMemory   = 512  // files up to this size are received in memory
	fuzzRecvCheckpoint = 64   // a checkpoint every 64 bytes on disk
	fuzzRecvMaxFrame   = 8192 // frames of the input stream
)

// Flags in the first byte of a FuzzReceivePartial input.
const (
	fuzzRecvNoMemory = 1 << 0 // receive even small files on disk
	fuzzRecvResume   = 1 << 1 // after the first Receive, a second one in the same directory
)

// fuzzStream encodes the first byte of an input and its messages as frames.
func fuzzStream(flags byte, msgs ...wire.Message) []byte {
	var b bytes.Buffer
	b.WriteByte(flags)
	for _, m := range msgs {
		p, err := wire.Marshal(m)
		if err != nil {
			panic(err)
		}
		wire.WriteFrame(&b, p)
	}
	return b.Bytes()
}

// receiveSeeds are the seeds of package wire's FuzzReceive.
func receiveSeeds() map[string][]byte {
	small := bytes.Repeat([]byte("0123456789abcdef"), 20) // 320 bytes
	big := bytes.Repeat([]byte("report line\n"), 200)     // 2400 bytes
	hdr := func(name string, data []byte) *wire.FileHeader {
		return &wire.FileHeader{Name: name, Size: uint64(len(data)), SHA256: sha256.Sum256(data)}
	}
	data := func(p []byte) *wire.Data { return &wire.Data{Bytes: p} }
	return map[string][]byte{
		"empty":            {},
		"memory-valid":     fuzzStream(0, hdr("message.txt", small), data(small[:100]), data(small[100:])),
		"disk-valid":       fuzzStream(fuzzRecvNoMemory, hdr("message.txt", small), data(small)),
		"big-valid":        fuzzStream(0, hdr("report.txt", big), data(big[:1000]), data(big[1000:2000]), data(big[2000:])),
		"big-resumed":      fuzzStream(fuzzRecvResume, hdr("report.txt", big), data(big[:1000]), hdr("report.txt", big), data(big[1000:])),
		"big-cut":          fuzzStream(0, hdr("report.txt", big), data(big[:1000])),
		"empty-file":       fuzzStream(0, hdr("empty.txt", nil)),
		"too-large":        fuzzStream(0, &wire.FileHeader{Name: "huge.bin", Size: fuzzRecvMaxSize + 1}),
		"bad-name":         fuzzStream(0, hdr("../../etc/passwd", small), data(small)),
		"hash-mismatch":    fuzzStream(0, hdr("message.txt", small), data(big[:len(small)])),
		"too-much-data":    fuzzStream(fuzzRecvNoMemory, hdr("message.txt", small), data(small), data([]byte{1})),
		"overlong-chunk":   fuzzStream(0, hdr("message.txt", small[:10]), data(small[:11])),
		"unexpected":       fuzzStream(0, hdr("message.txt", small), &wire.FileAck{}),
		"unexpected-disk":  fuzzStream(fuzzRecvNoMemory, hdr("message.txt", small), data(small[:70]), &wire.FileAck{}),
		"peer-error":       fuzzStream(fuzzRecvNoMemory, hdr("message.txt", small), data(small[:5]), &wire.Error{Code: wire.CodeBusy, Text: "bye"}),
		"header-first-bad": fuzzStream(0, &wire.Data{Bytes: small}),
	}
}

// TestFuzzCorpus checks (or, with -update, writes) the committed seed corpus.
func TestFuzzCorpus(t *testing.T) {
	seeds := fuzzseed.Bytes(receiveSeeds())
	if *update {
		if err := fuzzseed.Write("FuzzReceivePartial", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzReceivePartial", seeds, true, "run go test ./board -run TestFuzzCorpus -update")
}

// FuzzReceivePartial feeds arbitrary message streams to the board's
// receiver, in memory or on disk, once or twice in the same directory (an
// interrupted transfer and its retry). It must never panic or hang; it may
// return a file only if the file is exactly what its header announced, under a
// valid name and the size limit; it never writes outside its partial
// directory; each refusal it returns (other than the stream ending or the
// peer's own Error) was answered to the peer with that refusal's code; and a
// file it returns can be placed and discarded.
func FuzzReceivePartial(f *testing.F) {
	for _, seed := range receiveSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) == 0 {
			return
		}
		flags, msgs := input[0], fuzzMessages(input[1:])
		root := t.TempDir()
		p := &partials{dir: filepath.Join(root, "partial"), every: fuzzRecvCheckpoint, inMemory: fuzzRecvInMemory}
		if flags&fuzzRecvNoMemory != 0 {
			p.inMemory = 0
		}
		r := p.receiver(fuzzRecvMaxSize)
		rounds := [][]wire.Message{msgs}
		if flags&fuzzRecvResume != 0 {
			// The retry starts at the second FileHeader, as a sender's would.
			for i := 1; i < len(msgs); i++ {
				if _, ok := msgs[i].(*wire.FileHeader); ok {
					rounds = [][]wire.Message{msgs[:i], msgs[i:]}
					break
				}
			}
		}
		for _, in := range rounds {
			q := &msgQueue{in: in}
			got, err := r.Receive(q)
			if err == nil {
				checkReceived(t, got)
				discard(got, filepath.Join(p.dir, "never-placed"))
				continue
			}
			var peer *wire.Error
			if errors.As(err, &peer) || errors.Is(err, net.ErrClosed) {
				continue
			}
			if len(q.out) == 0 {
				t.Fatalf("refused with %v but answered nothing", err)
			}
			e, ok := q.out[len(q.out)-1].(*wire.Error)
			if !ok || e.Code != wire.CodeOf(err) {
				t.Fatalf("refused with %v (%v) but answered %v", err, wire.CodeOf(err), q.out[len(q.out)-1])
			}
		}
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "partial" {
				t.Fatalf("the receiver wrote %q outside its partial directory", e.Name())
			}
		}
	})
}

// checkReceived fails t unless in is exactly what its header announced.
func checkReceived(t *testing.T, in *wire.Received) {
	t.Helper()
	var content []byte
	switch sink := in.Sink.(type) {
	case *wire.Memory:
		content = sink.Bytes()
	case *partialSink:
		var err error
		if content, err = os.ReadFile(sink.part); err != nil {
			t.Fatalf("the received file: %v", err)
		}
	default:
		t.Fatalf("received into a %T", in.Sink)
	}
	if err := wire.ValidName(in.Name); err != nil {
		t.Fatalf("received a file under an invalid name: %v", err)
	}
	if in.Size > fuzzRecvMaxSize || int64(len(content)) != in.Size {
		t.Fatalf("received %d bytes, announced %d (limit %d)", len(content), in.Size, fuzzRecvMaxSize)
	}
	if sha256.Sum256(content) != in.SHA256 {
		t.Fatalf("received content whose SHA-256 is not the announced one")
	}
}

// fuzzMessages decodes the frames of p into messages, up to the first that
// does not decode: there the stream ends, as a connection would.
func fuzzMessages(p []byte) []wire.Message {
	var msgs []wire.Message
	r := bytes.NewReader(p)
	for {
		frame, err := wire.ReadFrame(r, fuzzRecvMaxFrame, nil)
		if err != nil {
			return msgs
		}
		m, err := wire.Unmarshal(frame)
		if err != nil {
			return msgs
		}
		msgs = append(msgs, m)
	}
}

// msgQueue is an in-memory wire.MessageReadWriter: reads come from in, writes
// go to out, and a read past the end is a closed connection.
type msgQueue struct {
	in  []wire.Message
	out []wire.Message
}

func (q *msgQueue) ReadMessage() (wire.Message, error) {
	if len(q.in) == 0 {
		return nil, &net.OpError{Op: "read", Err: net.ErrClosed}
	}
	m := q.in[0]
	q.in = q.in[1:]
	return m, nil
}

func (q *msgQueue) WriteMessage(m wire.Message) error {
	q.out = append(q.out, m)
	return nil
}
