package wire

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net"
	"testing"
)

// The receiver of FuzzReceive: small limits, so that the fuzzer reaches them.
const (
	fuzzRecvMaxSize  = 4096 // file-too-large above it
	fuzzRecvMaxFrame = 8192 // frames of the input stream
)

// Flags in the first byte of a FuzzReceive input. The same inputs drive
// board's FuzzReceivePartial, for which the first flag means something.
const (
	fuzzRecvNoMemory = 1 << 0 // (board) receive even small files on disk
	fuzzRecvResume   = 1 << 1 // after the first Receive, a second one (the retry)
)

// fuzzStream encodes the first byte of a FuzzReceive input and its messages as
// frames.
func fuzzStream(flags byte, msgs ...Message) []byte {
	var b bytes.Buffer
	b.WriteByte(flags)
	for _, m := range msgs {
		WriteFrame(&b, mustMarshal(m))
	}
	return b.Bytes()
}

func receiveSeeds() map[string][]byte {
	small := bytes.Repeat([]byte("0123456789abcdef"), 20) // 320 bytes
	big := bytes.Repeat([]byte("report line\n"), 200)     // 2400 bytes
	hdr := func(name string, data []byte) *FileHeader {
		return &FileHeader{Name: name, Size: uint64(len(data)), SHA256: sha256.Sum256(data)}
	}
	data := func(p []byte) *Data { return &Data{Bytes: p} }
	return map[string][]byte{
		"empty":            {},
		"memory-valid":     fuzzStream(0, hdr("message.txt", small), data(small[:100]), data(small[100:])),
		"disk-valid":       fuzzStream(fuzzRecvNoMemory, hdr("message.txt", small), data(small)),
		"big-valid":        fuzzStream(0, hdr("report.txt", big), data(big[:1000]), data(big[1000:2000]), data(big[2000:])),
		"big-resumed":      fuzzStream(fuzzRecvResume, hdr("report.txt", big), data(big[:1000]), hdr("report.txt", big), data(big[1000:])),
		"big-cut":          fuzzStream(0, hdr("report.txt", big), data(big[:1000])),
		"empty-file":       fuzzStream(0, hdr("empty.txt", nil)),
		"too-large":        fuzzStream(0, &FileHeader{Name: "huge.bin", Size: fuzzRecvMaxSize + 1}),
		"bad-name":         fuzzStream(0, hdr("../../etc/passwd", small), data(small)),
		"hash-mismatch":    fuzzStream(0, hdr("message.txt", small), data(big[:len(small)])),
		"too-much-data":    fuzzStream(fuzzRecvNoMemory, hdr("message.txt", small), data(small), data([]byte{1})),
		"overlong-chunk":   fuzzStream(0, hdr("message.txt", small[:10]), data(small[:11])),
		"unexpected":       fuzzStream(0, hdr("message.txt", small), &FileAck{}),
		"unexpected-disk":  fuzzStream(fuzzRecvNoMemory, hdr("message.txt", small), data(small[:70]), &FileAck{}),
		"peer-error":       fuzzStream(fuzzRecvNoMemory, hdr("message.txt", small), data(small[:5]), &Error{Code: CodeBusy, Text: "bye"}),
		"header-first-bad": fuzzStream(0, &Data{Bytes: small}),
	}
}

// FuzzReceive feeds arbitrary message streams to a Receiver with the default
// Memory sink, once or twice (an interrupted transfer and its retry). It must
// never panic or hang; it may return a file only if the file is exactly what
// its header announced, under a valid name and the size limit; and each
// refusal it returns (other than the stream ending or the peer's own Error)
// was answered to the peer with that refusal's code. Board's
// FuzzReceivePartial runs the same inputs over its sink on disk.
func FuzzReceive(f *testing.F) {
	for _, seed := range receiveSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) == 0 {
			return
		}
		flags, msgs := input[0], fuzzMessages(input[1:])
		r := Receiver{MaxSize: fuzzRecvMaxSize}
		rounds := [][]Message{msgs}
		if flags&fuzzRecvResume != 0 {
			// The retry starts at the second FileHeader, as a sender's would.
			for i := 1; i < len(msgs); i++ {
				if _, ok := msgs[i].(*FileHeader); ok {
					rounds = [][]Message{msgs[:i], msgs[i:]}
					break
				}
			}
		}
		for _, in := range rounds {
			q := &msgQueue{in: in}
			got, err := r.Receive(q)
			if err == nil {
				checkReceived(t, got, got.Sink.(*Memory).Bytes())
				continue
			}
			var peer *Error
			if errors.As(err, &peer) || errors.Is(err, net.ErrClosed) {
				continue
			}
			if len(q.out) == 0 {
				t.Fatalf("refused with %v but answered nothing", err)
			}
			e, ok := q.out[len(q.out)-1].(*Error)
			if !ok || e.Code != CodeOf(err) {
				t.Fatalf("refused with %v (%v) but answered %v", err, CodeOf(err), q.out[len(q.out)-1])
			}
		}
	})
}

// checkReceived fails t unless in, whose content is content, is exactly what
// its header announced.
func checkReceived(t *testing.T, in *Received, content []byte) {
	t.Helper()
	if err := ValidName(in.Name); err != nil {
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
func fuzzMessages(p []byte) []Message {
	var msgs []Message
	r := bytes.NewReader(p)
	for {
		frame, err := ReadFrame(r, fuzzRecvMaxFrame, nil)
		if err != nil {
			return msgs
		}
		m, err := Unmarshal(frame)
		if err != nil {
			return msgs
		}
		msgs = append(msgs, m)
	}
}
