package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

var frameSizes = []int{0, 1, 4, 5, 100, smallFrame, smallFrame + 1, DefaultMaxFrame - 1, DefaultMaxFrame}

func payload(n int) []byte {
	p := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)}).Read(p)
	return p
}

func TestFrameRoundTripBuffer(t *testing.T) {
	for _, n := range frameSizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			want := payload(n)
			var buf bytes.Buffer
			if err := WriteFrame(&buf, want); err != nil {
				t.Fatalf("WriteFrame: %v", err)
			}
			if got := buf.Len(); got != HeaderSize+n {
				t.Fatalf("encoded %d bytes, want %d", got, HeaderSize+n)
			}
			if got := binary.BigEndian.Uint32(buf.Bytes()); got != uint32(n) {
				t.Fatalf("header says %d, want %d", got, n)
			}
			got, err := ReadFrame(&buf, DefaultMaxFrame, nil)
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got a different payload of %d bytes, want %d bytes", len(got), n)
			}
			if _, err := ReadFrame(&buf, DefaultMaxFrame, nil); err != io.EOF {
				t.Fatalf("after the last frame: got %v, want io.EOF", err)
			}
		})
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	var enc bytes.Buffer
	WriteFrame(&enc, payload(100))
	WriteFrame(&enc, payload(300))
	r := bytes.NewReader(enc.Bytes())

	buf := make([]byte, 0, 200)
	p, err := ReadFrame(r, DefaultMaxFrame, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &p[0] != &buf[:1][0] {
		t.Errorf("a 100-byte frame did not reuse a buffer of capacity 200")
	}
	p, err = ReadFrame(r, DefaultMaxFrame, buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := cap(p); got != 300 {
		t.Errorf("a 300-byte frame got a new buffer of capacity %d, want exactly 300", got)
	}
}

func TestFrameRoundTripNet(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			a, b := tr.pair(t)
			ca, cb := NewConn(a, guardOptions), NewConn(b, guardOptions)
			done := make(chan error, 1)
			go func() {
				for _, n := range frameSizes {
					if err := ca.WriteFrame(payload(n)); err != nil {
						done <- err
						return
					}
					// The package-level function too, on the raw connection.
					if err := WriteFrame(a, payload(n)); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			for _, n := range frameSizes {
				for _, how := range []string{"Conn.WriteFrame", "WriteFrame"} {
					got, err := cb.ReadFrame()
					if err != nil {
						t.Fatalf("frame of %d bytes from %s: %v", n, how, err)
					}
					if !bytes.Equal(got, payload(n)) {
						t.Fatalf("frame of %d bytes from %s: got %d different bytes", n, how, len(got))
					}
				}
			}
			if err := <-done; err != nil {
				t.Fatalf("writer: %v", err)
			}
		})
	}
}

// TestReadFrameTooLargeDoesNotAllocate checks that a header announcing 4 GiB is
// refused before anything is allocated for it.
func TestReadFrameTooLargeDoesNotAllocate(t *testing.T) {
	hdr := []byte{0xff, 0xff, 0xff, 0xff}
	r := bytes.NewReader(hdr)
	var err error
	read := func() {
		r.Reset(hdr)
		_, err = ReadFrame(r, DefaultMaxFrame, nil)
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	allocs := testing.AllocsPerRun(5, read)
	runtime.ReadMemStats(&after)

	var tooLarge *Refusal
	if !errors.As(err, &tooLarge) || tooLarge.Code != CodeFrameTooLarge {
		t.Fatalf("got %v, want a frame-too-large refusal", err)
	}
	if want := fmt.Sprintf("frame of %d bytes exceeds the maximum of %d", uint32(0xffffffff), DefaultMaxFrame); tooLarge.Text != want {
		t.Errorf("got %q, want %q", tooLarge.Text, want)
	}
	if allocs > 3 {
		t.Errorf("got %v allocations per refused frame, want at most 3 (header, refusal and its text)", allocs)
	}
	if delta := after.TotalAlloc - before.TotalAlloc; delta >= 1<<20 {
		t.Errorf("refusing 6 oversized frames allocated %d bytes, want well under 1 MiB", delta)
	}
}

func TestReadFrameTooLargeReadsNoPayload(t *testing.T) {
	const max = 16
	var enc bytes.Buffer
	WriteFrame(&enc, payload(max+1))
	r := bytes.NewReader(enc.Bytes())
	_, err := ReadFrame(r, max, nil)
	if !isRefusal(err, CodeFrameTooLarge) {
		t.Fatalf("got %v, want a frame-too-large refusal", err)
	}
	if got, want := err.Error(), "frame-too-large: frame of 17 bytes exceeds the maximum of 16"; got != want {
		t.Errorf("got message %q, want %q", got, want)
	}
	if got := r.Len(); got != max+1 {
		t.Errorf("%d payload bytes left unread, want all %d", got, max+1)
	}
	if got := CodeOf(err); got != CodeFrameTooLarge {
		t.Errorf("CodeOf: got %v, want %v", got, CodeFrameTooLarge)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	var enc bytes.Buffer
	WriteFrame(&enc, []byte("0123456789"))
	frame := enc.Bytes()
	for k := 0; k < len(frame); k++ {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(frame[:k]), DefaultMaxFrame, nil)
			checkTruncation(t, k, err)
		})
	}
	t.Run("messages", func(t *testing.T) {
		for _, tc := range []struct {
			k    int
			want string
		}{
			{2, "malformed: truncated frame header (got 2 of 4 bytes)"},
			{7, "malformed: truncated frame payload (got 3 of 10 bytes)"},
		} {
			_, err := ReadFrame(bytes.NewReader(frame[:tc.k]), DefaultMaxFrame, nil)
			if err == nil || err.Error() != tc.want {
				t.Errorf("prefix of %d bytes: got %v, want %q", tc.k, err, tc.want)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("prefix of %d bytes: got %v, want it to match io.ErrUnexpectedEOF", tc.k, err)
			}
		}
	})
}

// checkTruncation checks the error for a frame cut after k bytes.
func checkTruncation(t *testing.T, k int, err error) {
	t.Helper()
	switch {
	case k == 0 && err != io.EOF:
		t.Errorf("empty input: got %v, want io.EOF", err)
	case k > 0 && (!isRefusal(err, CodeMalformed) || !errors.Is(err, io.ErrUnexpectedEOF)):
		t.Errorf("frame cut after %d bytes: got %v, want a malformed refusal matching io.ErrUnexpectedEOF", k, err)
	}
}

// TestConnTruncated cuts a frame at every offset over real connections whose
// writer closes after the prefix: the reader must report it, never hang (a hang
// shows up as a deadline error, which fails the test).
func TestConnTruncated(t *testing.T) {
	var enc bytes.Buffer
	WriteFrame(&enc, []byte("0123456789"))
	frame := enc.Bytes()
	for _, tr := range transports {
		for k := 0; k < len(frame); k++ {
			t.Run(fmt.Sprintf("%s/%d", tr.name, k), func(t *testing.T) {
				a, b := tr.pair(t)
				go func() {
					a.Write(frame[:k])
					a.Close()
				}()
				c := NewConn(b, Options{ReadTimeout: 5 * time.Second})
				_, err := c.ReadFrame()
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("the read hung until its deadline: %v", err)
				}
				checkTruncation(t, k, err)
			})
		}
	}
}

func TestConnReadTimeout(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			_, b := tr.pair(t)
			c := NewConn(b, Options{ReadTimeout: 100 * time.Millisecond})
			_, err := c.ReadFrame()
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("got %v, want an error matching os.ErrDeadlineExceeded", err)
			}
			if got := CodeOf(err); got != CodeTimeout {
				t.Errorf("CodeOf: got %v, want %v", got, CodeTimeout)
			}
		})
	}
}

// TestConnReadTimeoutSlowPayload checks that the deadline covers the whole
// frame: a peer that sends a header, then stalls, is cut off.
func TestConnReadTimeoutSlowPayload(t *testing.T) {
	a, b := tcpPair(t)
	a.Write([]byte{0, 0, 0, 10, 'x'})
	c := NewConn(b, Options{ReadTimeout: 100 * time.Millisecond})
	_, err := c.ReadFrame()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want an error matching os.ErrDeadlineExceeded", err)
	}
}

func TestConnOverallDeadline(t *testing.T) {
	_, b := tcpPair(t)
	c := NewConn(b, Options{ReadTimeout: time.Hour})
	c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.ReadFrame()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want an error matching os.ErrDeadlineExceeded", err)
	}
}

func TestConnWriteTimeout(t *testing.T) {
	a, _ := tcpPair(t) // nobody reads b
	c := NewConn(a, Options{WriteTimeout: 100 * time.Millisecond})
	p := payload(DefaultMaxFrame)
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = c.WriteFrame(p)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want an error matching os.ErrDeadlineExceeded", err)
	}
}

// countingConn counts Write calls.
type countingConn struct {
	net.Conn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.Conn.Write(p)
}

func TestWriteFrameOneWrite(t *testing.T) {
	for _, n := range frameSizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a, b := pipePair(t)
			cc := &countingConn{Conn: a}
			go io.Copy(io.Discard, b)
			if err := WriteFrame(cc, payload(n)); err != nil {
				t.Fatal(err)
			}
			if cc.writes != 1 {
				t.Errorf("WriteFrame: got %d writes, want 1", cc.writes)
			}
			cc.writes = 0
			if err := NewConn(cc, guardOptions).WriteFrame(payload(n)); err != nil {
				t.Fatal(err)
			}
			if cc.writes != 1 {
				t.Errorf("Conn.WriteFrame: got %d writes, want 1", cc.writes)
			}
		})
	}
}

func TestWriteFrameNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers; make test runs this without -race")
	}
	p := payload(1000)
	allocs := testing.AllocsPerRun(100, func() {
		WriteFrame(io.Discard, p)
	})
	if allocs > 0 {
		t.Errorf("WriteFrame of 1000 bytes: got %v allocations, want 0", allocs)
	}
}

func TestConnEmptyFrame(t *testing.T) {
	a, b := tcpPair(t)
	a.Write([]byte{0, 0, 0, 0})
	c := NewConn(b, guardOptions)
	_, err := c.ReadMessage()
	var r *Refusal
	if !errors.As(err, &r) || r.Text != "empty frame (a message needs at least its type byte)" {
		t.Fatalf("got %v, want the empty-frame refusal", err)
	}
	if got := CodeOf(err); got != CodeMalformed {
		t.Errorf("CodeOf: got %v, want %v", got, CodeMalformed)
	}
}

func TestConnMaxFrame(t *testing.T) {
	a, b := tcpPair(t)
	if got := NewConn(b, Options{}).MaxFrame(); got != DefaultMaxFrame {
		t.Errorf("default MaxFrame: got %d, want %d", got, DefaultMaxFrame)
	}
	c := NewConn(b, Options{MaxFrame: 10, ReadTimeout: 10 * time.Second})
	if got := c.MaxFrame(); got != 10 {
		t.Errorf("MaxFrame: got %d, want 10", got)
	}
	WriteFrame(a, payload(11))
	_, err := c.ReadFrame()
	var tooLarge *Refusal
	if !errors.As(err, &tooLarge) || tooLarge.Code != CodeFrameTooLarge || tooLarge.Text != "frame of 11 bytes exceeds the maximum of 10" {
		t.Fatalf("got %v, want a frame-too-large refusal for 11 bytes over 10", err)
	}
	if c.NetConn() != b {
		t.Errorf("NetConn did not return the wrapped connection")
	}
}
