package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
	"time"
)

// allocated returns the bytes fn allocates, from the runtime's count.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// header returns a frame header announcing n bytes.
func header(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// TestReadFrameHeaderAloneAllocatesLittle is finding 6's allocation: a header
// that announces the largest frame a reader takes, and one byte of it, must
// not make the reader allocate the announced length. It fails if ReadFrame
// allocates a frame's length up front.
func TestReadFrameHeaderAloneAllocatesLittle(t *testing.T) {
	const max = 16 << 20
	input := append(header(max), 'x')
	for _, buf := range []struct {
		name string
		buf  []byte
	}{{"no buffer", nil}, {"small buffer", make([]byte, 0, 512)}} {
		t.Run(buf.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = ReadFrame(bytes.NewReader(input), max, buf.buf) })
			if !isRefusal(err, CodeMalformed) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("got %v, want a truncated payload", err)
			}
			if n > 64<<10 {
				t.Errorf("a header announcing %d bytes and 1 byte of payload allocated %d bytes, want at most 64 KiB", max, n)
			}
		})
	}
	t.Run("Conn", func(t *testing.T) {
		a, b := tcpPair(t)
		if _, err := a.Write(input); err != nil {
			t.Fatal(err)
		}
		a.Close()
		c := NewConn(b, Options{MaxFrame: max, ReadTimeout: 5 * time.Second})
		var err error
		n := allocated(func() { _, err = c.ReadFrame() })
		if !isRefusal(err, CodeMalformed) {
			t.Fatalf("got %v, want a truncated payload", err)
		}
		if n > 64<<10 {
			t.Errorf("Conn.ReadFrame of a header announcing %d bytes and 1 byte of payload allocated %d bytes, want at most 64 KiB", max, n)
		}
	})
}

// TestReadFrameGrowsToEverySize reads frames whose lengths straddle each
// doubling of the buffer, delivered a byte at a time, in big reads, and after
// a short buffer: the payload is exact and its capacity never exceeds its
// length.
func TestReadFrameGrowsToEverySize(t *testing.T) {
	var sizes []int
	for n := growFrom / 2; n <= 1<<20; n *= 2 {
		sizes = append(sizes, n-1, n, n+1)
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte a read", iotest.OneByteReader},
		{"half a buffer a read", iotest.HalfReader},
	}
	for _, n := range sizes {
		want := payload(n)
		var enc bytes.Buffer
		WriteFrame(&enc, want)
		for _, rd := range readers {
			if rd.name == "one byte a read" && n > 64<<10 {
				continue // slow, and says nothing the smaller sizes do not
			}
			for _, bufCap := range []int{0, 100, n - 1} {
				t.Run(fmt.Sprintf("%d/%s/buffer %d", n, rd.name, bufCap), func(t *testing.T) {
					got, err := ReadFrame(rd.wrap(bytes.NewReader(enc.Bytes())), 1<<21, make([]byte, 0, bufCap))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("got %d different bytes, want the %d sent", len(got), n)
					}
					if cap(got) != n {
						t.Errorf("capacity %d for a payload of %d bytes, want exactly %d", cap(got), n, n)
					}
				})
			}
		}
	}
}

// TestReadFrameGrowsAsBytesArrive cuts a large frame at several points and
// checks that what the reader allocated stays within about twice what
// arrived, never the announced length.
func TestReadFrameGrowsAsBytesArrive(t *testing.T) {
	const announced = 8 << 20
	frame := append(header(announced), payload(announced)...)
	for _, sent := range []int{1, 4 << 10, 100 << 10, 1 << 20} {
		t.Run(fmt.Sprint(sent), func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = ReadFrame(bytes.NewReader(frame[:HeaderSize+sent]), announced, nil) })
			if !isRefusal(err, CodeMalformed) {
				t.Fatalf("got %v, want a truncated payload", err)
			}
			// Doubling: the buffers allocated sum to less than four times
			// what arrived, plus the first growFrom.
			if limit := uint64(4*sent + 2*growFrom + 1<<10); n > limit {
				t.Errorf("%d bytes of an announced %d allocated %d bytes, want at most %d", sent, announced, n, limit)
			}
		})
	}
}

// TestConnFirstFrameLimit checks Options.MaxFirstFrame: the first frame is
// refused above it, with a sentence saying it is the first frame's limit,
// and a frame of exactly the limit is taken; later frames may be as large as
// MaxFrame.
func TestConnFirstFrameLimit(t *testing.T) {
	const first, max = 100, 1000
	o := Options{MaxFrame: max, MaxFirstFrame: first, ReadTimeout: 5 * time.Second}
	t.Run("over", func(t *testing.T) {
		a, b := tcpPair(t)
		a.Write(header(first + 1))
		_, err := NewConn(b, o).ReadFrame()
		var r *Refusal
		if !errors.As(err, &r) || r.Code != CodeFrameTooLarge {
			t.Fatalf("got %v, want frame-too-large", err)
		}
		if want := "first frame of 101 bytes exceeds the maximum of 100, the largest legal first message"; r.Text != want {
			t.Errorf("got %q, want %q", r.Text, want)
		}
	})
	t.Run("at the limit, then larger", func(t *testing.T) {
		a, b := tcpPair(t)
		go func() {
			WriteFrame(a, payload(first))
			WriteFrame(a, payload(max))
		}()
		c := NewConn(b, o)
		for i, n := range []int{first, max} {
			p, err := c.ReadFrame()
			if err != nil || !bytes.Equal(p, payload(n)) {
				t.Fatalf("frame %d of %d bytes: got %d bytes, %v", i, n, len(p), err)
			}
		}
	})
	t.Run("a limit at or above MaxFrame is MaxFrame", func(t *testing.T) {
		a, b := tcpPair(t)
		go WriteFrame(a, payload(max))
		p, err := NewConn(b, Options{MaxFrame: max, MaxFirstFrame: 2 * max}).ReadFrame()
		if err != nil || len(p) != max {
			t.Fatalf("got %d bytes, %v; want %d", len(p), err, max)
		}
		a.Write(header(max + 1))
	})
}

// TestConnReadFrameNoAllocs checks the steady state: once a Conn's buffer has
// grown to a frame size, reading more frames of that size allocates nothing.
func TestConnReadFrameNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates; make test runs this without -race")
	}
	const n, frames = 32 << 10, 200
	a, b := tcpPair(t)
	w, r := NewConn(a, Options{}), NewConn(b, Options{})
	done := make(chan error, 1)
	go func() {
		p := payload(n)
		for range frames + 1 {
			if err := w.WriteFrame(p); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if _, err := r.ReadFrame(); err != nil { // grows the buffer
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(frames-1, func() {
		if _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("Conn.ReadFrame of %d-byte frames: got %v allocations per frame, want 0", n, allocs)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// fuzzGrowMax is the frame limit of FuzzReadFrameGrowing: above growFrom, so
// that frames take the buffer's doublings.
const fuzzGrowMax = 5 * growFrom

// growSeeds are FuzzReadFrameGrowing's seeds: a read size, then the input.
func growSeeds() map[string][]byte {
	frame := func(n int) []byte { return append(header(uint32(n)), payload(n)...) }
	seed := func(chunk uint16, data []byte) []byte {
		return append(binary.BigEndian.AppendUint16(nil, chunk), data...)
	}
	return map[string][]byte{
		"one-chunk":         seed(0, frame(growFrom+1)),
		"odd-chunks":        seed(977, frame(2*growFrom+1)),
		"byte-by-byte":      seed(1, frame(growFrom+10)),
		"two-frames":        seed(4000, append(frame(3*growFrom), frame(5)...)),
		"cut-after-growing": seed(1500, frame(4 * growFrom)[:3*growFrom]),
		"header-alone":      seed(0, header(fuzzGrowMax)),
		"over":              seed(0, header(fuzzGrowMax+1)),
	}
}

// FuzzReadFrameGrowing reads frames larger than growFrom, delivered in reads
// of a size the fuzzer picks, into no buffer and into a small one: each
// payload is exactly the input's and has no spare capacity. (What ReadFrame
// allocates is checked by TestReadFrameGrowsAsBytesArrive.)
func FuzzReadFrameGrowing(f *testing.F) {
	for _, s := range growSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		chunk, data := int(binary.BigEndian.Uint16(in)), in[2:]
		for _, bufCap := range []int{0, 100} {
			var r io.Reader = bytes.NewReader(data)
			if chunk > 0 {
				r = &chunkReader{r: r, n: chunk}
			}
			consumed := 0
			for {
				p, err := ReadFrame(r, fuzzGrowMax, make([]byte, 0, bufCap))
				if err != nil {
					if err != io.EOF && !isRefusal(err, CodeMalformed) && !isRefusal(err, CodeFrameTooLarge) {
						t.Fatalf("unexpected error %v", err)
					}
					break
				}
				if !bytes.Equal(p, data[consumed+HeaderSize:consumed+HeaderSize+len(p)]) {
					t.Fatalf("the payload differs from the input")
				}
				if len(p) > bufCap && cap(p) != len(p) {
					t.Fatalf("a payload of %d bytes in a buffer of %d", len(p), cap(p))
				}
				consumed += HeaderSize + len(p)
			}
		}
	})
}

// chunkReader reads at most n bytes at a time from r.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}
