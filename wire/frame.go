package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"sync"
	"syscall"
)

// Frame layout (PROTOCOL.md §1): a big-endian u32 length, then that many payload
// bytes.
const (
	// HeaderSize is the size of a frame header: the payload length as a u32.
	HeaderSize = 4

	// DefaultMaxFrame is the largest payload a reader accepts unless it is told
	// otherwise.
	DefaultMaxFrame = 64 << 10

	// maxPayload is the largest length a header can announce.
	maxPayload = math.MaxUint32

	// smallFrame is the payload size up to which a frame is copied behind its
	// header and written in one Write, rather than written with writev.
	smallFrame = 4 << 10

	// pooledFrame is the largest frame WriteFrame copies into a pooled buffer
	// when the writer is not a socket; bigger ones take two writes.
	pooledFrame = HeaderSize + MaxDataChunk + 1
)

// frameTooLarge returns the refusal of a frame header that announced size
// bytes, over the reader's maximum; first says that max is the limit of a
// connection's first frame. Its text is built without fmt, so that refusing
// costs only the refusal and its text.
func frameTooLarge(size uint32, max int, first bool) *Refusal {
	var b [96]byte
	text := append(b[:0], "frame of "...)
	if first {
		text = append(text[:0], "first frame of "...)
	}
	text = strconv.AppendUint(text, uint64(size), 10)
	text = append(text, " bytes exceeds the maximum of "...)
	text = strconv.AppendInt(text, int64(max), 10)
	if first {
		text = append(text, ", the largest legal first message"...)
	}
	return &Refusal{Code: CodeFrameTooLarge, Text: string(text)}
}

// truncated returns the refusal of a frame part that ended after got of want
// bytes: the connection closed inside it.
func truncated(part string, got, want int) *Refusal {
	return &Refusal{Code: CodeMalformed, Err: io.ErrUnexpectedEOF,
		Text: fmt.Sprintf("truncated frame %s (got %d of %d bytes)", part, got, want)}
}

// ReadFrame reads one frame from r and returns its payload.
//
// It reads the header with io.ReadFull and checks the announced length against
// max (DefaultMaxFrame if max <= 0) before allocating anything: a larger frame
// is refused with a *Refusal of code frame-too-large ("frame of N bytes exceeds
// the maximum of M") and none of its payload is read. The payload is read into
// buf if its capacity suffices. Otherwise the buffer grows as the bytes arrive
// (see growFrom): it never allocates the announced length up front, so a
// header alone, or a frame cut short, costs about what the peer sent. A frame
// of length 0 gives an empty payload and no error; it is for the caller to
// refuse it (a message frame cannot be empty, see Unmarshal).
//
// A reader at end of input before the first header byte gives io.EOF itself, so
// that a server can tell a closed connection from a broken frame; input that ends
// inside the header or the payload is a truncated frame, a *Refusal of code
// malformed whose cause is io.ErrUnexpectedEOF (so PeerGone reports it). Other
// read errors are returned wrapped, so that errors.Is(err,
// os.ErrDeadlineExceeded) still works.
func ReadFrame(r io.Reader, max int, buf []byte) ([]byte, error) {
	var hdr []byte
	if cap(buf) >= HeaderSize {
		hdr = buf[:HeaderSize]
	} else {
		hdr = make([]byte, HeaderSize)
	}
	return readFrame(r, max, false, buf, hdr)
}

// growFrom is the capacity a frame buffer starts from when the caller's is
// too small for the announced length: the buffer doubles each time it fills,
// up to the announced length, so that what a reader has allocated and not yet
// filled is never more than 4 KiB or the bytes already received. A frame of
// up to growFrom bytes is read into one allocation of its exact size.
const growFrom = 4 << 10

// readFrame is ReadFrame with a caller-supplied header buffer (which may share
// memory with buf); first says that max is a connection's first-frame limit.
func readFrame(r io.Reader, max int, first bool, buf, hdr []byte) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	if n, err := io.ReadFull(r, hdr[:HeaderSize]); err != nil {
		switch {
		case err == io.EOF:
			return nil, io.EOF
		case err == io.ErrUnexpectedEOF:
			return nil, truncated("header", n, HeaderSize)
		default:
			return nil, fmt.Errorf("wire: reading frame header: %w", err)
		}
	}
	size := binary.BigEndian.Uint32(hdr)
	if uint64(size) > uint64(max) {
		return nil, frameTooLarge(size, max, first)
	}
	p, err := readPayload(r, int(size), buf)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, truncated("payload", len(p), int(size))
		}
		return nil, fmt.Errorf("wire: reading frame payload: %w", err)
	}
	return p, nil
}

// readPayload reads size bytes from r into buf, or into a buffer that grows
// from buf as the bytes arrive (see growFrom). On error it returns what it
// read.
func readPayload(r io.Reader, size int, buf []byte) ([]byte, error) {
	if size <= cap(buf) {
		p := buf[:size]
		n, err := io.ReadFull(r, p)
		return p[:n], err
	}
	p := buf[:0]
	for len(p) < size {
		if len(p) == cap(p) {
			grown := make([]byte, len(p), min(size, max(2*cap(p), growFrom)))
			p = grown[:copy(grown, p)]
		}
		n, err := io.ReadFull(r, p[len(p):cap(p)])
		p = p[:len(p)+n]
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// frameWriter holds the scratch memory of one WriteFrame call.
type frameWriter struct {
	buf []byte      // header, or header and payload, for a single Write
	arr [2][]byte   // backing array of vec
	vec net.Buffers // header and payload, for writev
}

var frameWriters = sync.Pool{New: func() any { return new(frameWriter) }}

// WriteFrame writes payload to w as one frame: its length as a 4-byte header, then
// the payload. Header and payload go out in a single write where possible: a
// small payload is copied behind the header; a large one is written with writev
// (net.Buffers) when w is a socket. Only a payload of more than 64 KiB to a writer
// that is not a socket takes two writes.
//
// WriteFrame does not apply any frame-size limit of its own beyond the 4 GiB a
// header can announce; respecting the reader's maximum is the caller's job.
func WriteFrame(w io.Writer, payload []byte) error {
	if uint64(len(payload)) > maxPayload {
		return fmt.Errorf("wire: cannot write a frame of %d bytes (at most %d)", len(payload), uint64(maxPayload))
	}
	fw := frameWriters.Get().(*frameWriter)
	defer frameWriters.Put(fw)
	fw.buf = binary.BigEndian.AppendUint32(fw.buf[:0], uint32(len(payload)))

	var err error
	switch {
	case len(payload) > smallFrame && isSocket(w):
		fw.vec = append(fw.arr[:0], fw.buf, payload)
		_, err = fw.vec.WriteTo(w)
		fw.arr = [2][]byte{} // do not keep the caller's payload alive
	case HeaderSize+len(payload) <= pooledFrame:
		fw.buf = append(fw.buf, payload...)
		_, err = w.Write(fw.buf)
	default:
		if _, err = w.Write(fw.buf); err == nil {
			_, err = w.Write(payload)
		}
	}
	if cap(fw.buf) > pooledFrame {
		fw.buf = nil
	}
	if err != nil {
		return fmt.Errorf("wire: writing frame: %w", err)
	}
	return nil
}

// isSocket reports whether w is an operating-system network connection, for which
// net.Buffers uses writev.
func isSocket(w io.Writer) bool {
	if _, ok := w.(net.Conn); !ok {
		return false
	}
	_, ok := w.(syscall.Conn)
	return ok
}
