package roles

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// MinRate is the slowest a client may send, in bytes per second, averaged
// over each stretch of idle_timeout that a daemon spends waiting for it.
// Read deadlines alone do not stop a client that sends one small frame just
// before each deadline — a trickle that holds a connection slot for as long
// as it likes (a certificate holder inside a session, or anyone on the CA's
// keep-alive connection). 1 KiB/s is far below any real link, and makes
// holding the daemon's max_conns slots cost a flood's bandwidth again.
const MinRate = 1 << 10

// minRateConn is a TCP connection whose reads fail once the peer has sent
// less than MinRate bytes a second over a window of waiting. Only time spent
// blocked in Read counts, so the daemon's own slowness (an fsync, a
// signature) never counts against the client.
type minRateConn struct {
	*net.TCPConn // kept embedded: CloseWrite, and writev for net.Buffers
	window       time.Duration
	waited       time.Duration // time blocked in Read in this window
	got          int64         // bytes read in this window
	exempt       atomic.Bool   // KeepOpen was called: no minimum rate
}

// KeepOpen lifts the minimum rate: the connection has become a board's watch
// on the CA (ca.LongLived, PROTOCOL.md §4.4), on which the CA talks and the
// board only answers.
func (c *minRateConn) KeepOpen() { c.exempt.Store(true) }

// Read reads from the connection and enforces the minimum rate.
func (c *minRateConn) Read(p []byte) (int, error) {
	if c.exempt.Load() {
		return c.TCPConn.Read(p)
	}
	start := time.Now()
	n, err := c.TCPConn.Read(p)
	c.waited += time.Since(start)
	c.got += int64(n)
	if c.waited >= c.window {
		if want := int64(MinRate * c.waited.Seconds()); c.got < want {
			return n, &tooSlowError{got: c.got, waited: c.waited}
		}
		c.waited, c.got = 0, 0
	}
	return n, err
}

// WriteTo copies the connection to w through Read, so that io.Copy does not
// bypass the rate check by the embedded connection's own WriteTo.
func (c *minRateConn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{c})
}

// tooSlowError reports a client under MinRate. It matches
// os.ErrDeadlineExceeded, so that it is handled (and answered, with code
// timeout) as a client too slow for its deadline.
type tooSlowError struct {
	got    int64
	waited time.Duration
}

func (e *tooSlowError) Error() string {
	return fmt.Sprintf("the client sent %d bytes in %v of waiting, less than the %d bytes a second required", e.got, e.waited.Round(time.Millisecond), MinRate)
}

func (e *tooSlowError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// withMinRate wraps a TCP connection so that it enforces MinRate over windows
// of window; other connections are returned as they are.
func withMinRate(c net.Conn, window time.Duration) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok && window > 0 {
		return &minRateConn{TCPConn: tc, window: window}
	}
	return c
}
