package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Default per-frame deadlines of a Conn.
const (
	DefaultReadTimeout  = 30 * time.Second
	DefaultWriteTimeout = 30 * time.Second
)

const (
	// readBufferSize is the size of a Conn's read buffer: a header and a small
	// message arrive in one read system call, while the bulk of a large payload
	// bypasses the buffer and is read straight into the frame buffer.
	readBufferSize = 4 << 10

	// keepWriteBuffer is the largest message buffer a Conn keeps between writes.
	keepWriteBuffer = 256 << 10
)

// Options configures a Conn. The zero value of each field selects its default.
type Options struct {
	// MaxFrame is the largest frame payload the Conn reads; DefaultMaxFrame if
	// zero or negative.
	MaxFrame int

	// MaxFirstFrame, if positive and below MaxFrame, is the largest payload of
	// the first frame the Conn reads: a daemon bounds a new connection's first
	// frame by the largest legal first message (MaxFirstFrameCA,
	// MaxFirstFrameBoard), and only later frames by MaxFrame.
	MaxFirstFrame int

	// ReadTimeout bounds the time to read one frame, from the first header byte
	// to the last payload byte; DefaultReadTimeout if zero. A negative value
	// disables the per-frame deadline (the overall deadline of SetDeadline
	// still applies).
	ReadTimeout time.Duration

	// WriteTimeout bounds the time to write one frame; DefaultWriteTimeout if
	// zero, none if negative.
	WriteTimeout time.Duration
}

// Conn is a framed, message-oriented connection over a net.Conn: every frame read
// and written has a deadline, and incoming frames are limited in size.
//
// A Conn may be used by at most one goroutine reading (ReadFrame, ReadMessage) and
// one goroutine writing (WriteFrame, WriteMessage) at a time. Close,
// SetDeadline and the accessors may be called from any goroutine.
type Conn struct {
	nc       net.Conn
	maxFrame int
	maxFirst int // the first frame's limit, until one has been read; 0 after
	rto, wto time.Duration
	vectored bool // nc is a socket: large frames go out with writev

	deadline atomic.Int64 // overall deadline in Unix nanoseconds; 0 for none

	// Reader side.
	br   *bufio.Reader
	rbuf []byte // frame buffer, reused for each read

	// Writer side.
	wbuf []byte      // header and encoded message, or header alone
	arr  [2][]byte   // backing array of vec
	vec  net.Buffers // header and payload, for writev
}

var _ MessageReadWriter = (*Conn)(nil)

// NewConn returns a Conn that frames c according to o.
func NewConn(c net.Conn, o Options) *Conn {
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	_, vectored := c.(syscall.Conn)
	if o.MaxFirstFrame >= o.MaxFrame {
		o.MaxFirstFrame = 0
	}
	return &Conn{
		nc:       c,
		maxFrame: o.MaxFrame,
		maxFirst: max(o.MaxFirstFrame, 0),
		rto:      o.ReadTimeout,
		wto:      o.WriteTimeout,
		vectored: vectored,
		br:       bufio.NewReaderSize(c, readBufferSize),
	}
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// MaxFrame returns the largest frame payload the Conn reads.
func (c *Conn) MaxFrame() int { return c.maxFrame }

// Close closes the underlying connection, unblocking any read or write.
func (c *Conn) Close() error { return c.nc.Close() }

// SetDeadline sets an overall deadline, for example for a whole handshake: from
// the next frame on, each read or write must end before the earlier of t and its
// own per-frame deadline. The zero time removes the overall deadline.
func (c *Conn) SetDeadline(t time.Time) {
	if t.IsZero() {
		c.deadline.Store(0)
		return
	}
	c.deadline.Store(t.UnixNano())
}

// frameDeadline returns the deadline for a frame started now with per-frame
// timeout d (none if negative).
func (c *Conn) frameDeadline(d time.Duration) time.Time {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	if ns := c.deadline.Load(); ns != 0 {
		if overall := time.Unix(0, ns); t.IsZero() || overall.Before(t) {
			t = overall
		}
	}
	return t
}

// ReadFrame reads one frame and returns its payload, with the errors of the
// package-level ReadFrame: the first frame is bounded by Options.MaxFirstFrame
// if set, every other by MaxFrame, and the Conn's buffer grows as a frame's
// bytes arrive. The payload is a slice of a buffer the Conn reuses: it is valid
// only until the next call to ReadFrame or ReadMessage.
func (c *Conn) ReadFrame() ([]byte, error) {
	if err := c.nc.SetReadDeadline(c.frameDeadline(c.rto)); err != nil {
		return nil, fmt.Errorf("wire: setting read deadline: %w", err)
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, 0, readBufferSize)
	}
	limit, first := c.maxFrame, c.maxFirst > 0
	if first {
		limit, c.maxFirst = c.maxFirst, 0
	}
	p, err := readFrame(c.br, limit, first, c.rbuf, c.rbuf[:HeaderSize])
	if cap(p) > cap(c.rbuf) {
		c.rbuf = p[:0]
	}
	return p, err
}

// ReadMessage reads one frame and decodes it as a message (see Unmarshal). Like
// every decoded message, it shares no memory with the Conn's buffer, except a
// *Data message, whose Bytes are valid only until the next read.
func (c *Conn) ReadMessage() (Message, error) {
	p, err := c.ReadFrame()
	if err != nil {
		return nil, err
	}
	return Unmarshal(p)
}

// WriteFrame writes p as one frame, before the write deadline.
func (c *Conn) WriteFrame(p []byte) error {
	return c.writeFrame(nil, p)
}

// WriteMessage encodes m and writes it as one frame, before the write deadline.
// A *Data message's bytes are written without being copied.
func (c *Conn) WriteMessage(m Message) error {
	if d, ok := m.(*Data); ok && d != nil {
		if err := d.check(); err != nil {
			return fmt.Errorf("wire: encoding Data: %w", err)
		}
		return c.writeFrame(dataTypeByte[:], d.Bytes)
	}
	buf, err := AppendMessage(append(c.wbuf[:0], 0, 0, 0, 0), m)
	if err != nil {
		return err
	}
	c.wbuf = buf
	n := len(buf) - HeaderSize
	if uint64(n) > maxPayload {
		return fmt.Errorf("wire: cannot write a %v message of %d bytes (at most %d)", m.Type(), n, uint64(maxPayload))
	}
	binary.BigEndian.PutUint32(buf, uint32(n))
	err = c.write(buf)
	if cap(c.wbuf) > keepWriteBuffer {
		c.wbuf = nil
	}
	return err
}

var dataTypeByte = [1]byte{byte(TypeData)}

// writeFrame writes a frame whose payload is head (a few bytes at most) followed
// by body, in one write or one writev.
func (c *Conn) writeFrame(head, body []byte) error {
	n := len(head) + len(body)
	if uint64(n) > maxPayload {
		return fmt.Errorf("wire: cannot write a frame of %d bytes (at most %d)", n, uint64(maxPayload))
	}
	c.wbuf = binary.BigEndian.AppendUint32(c.wbuf[:0], uint32(n))
	c.wbuf = append(c.wbuf, head...)
	if c.vectored && len(body) > smallFrame {
		if err := c.setWriteDeadline(); err != nil {
			return err
		}
		c.vec = append(c.arr[:0], c.wbuf, body)
		_, err := c.vec.WriteTo(c.nc)
		c.arr = [2][]byte{} // do not keep the caller's payload alive
		if err != nil {
			return fmt.Errorf("wire: writing frame: %w", err)
		}
		return nil
	}
	c.wbuf = append(c.wbuf, body...)
	err := c.write(c.wbuf)
	if cap(c.wbuf) > keepWriteBuffer {
		c.wbuf = nil
	}
	return err
}

func (c *Conn) setWriteDeadline() error {
	if err := c.nc.SetWriteDeadline(c.frameDeadline(c.wto)); err != nil {
		return fmt.Errorf("wire: setting write deadline: %w", err)
	}
	return nil
}

// write writes a whole frame in one Write call.
func (c *Conn) write(frame []byte) error {
	if err := c.setWriteDeadline(); err != nil {
		return err
	}
	if _, err := c.nc.Write(frame); err != nil {
		return fmt.Errorf("wire: writing frame: %w", err)
	}
	return nil
}

// LingerClose closes c the way a server should after writing an Error to a
// peer that may be mid-upload: it stops writing (a TCP half-close), drains
// what the peer still sends for up to wait or limit bytes, and only then
// closes, so that the peer reads the Error instead of a connection reset. A
// connection that cannot half-close is simply closed.
func LingerClose(c net.Conn, wait time.Duration, limit int64) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()                               //nolint:errcheck // closing
		c.SetReadDeadline(time.Now().Add(wait))       //nolint:errcheck // closing
		io.Copy(io.Discard, io.LimitReader(c, limit)) //nolint:errcheck // draining
	}
	c.Close()
}
