package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"pkiboard/session"
	"pkiboard/wire"
)

// peer names a daemon a client talks to, and where its address came from, so
// that a failure to reach it can say what to check.
type peer struct {
	daemon  string        // "CA" or "board"
	addr    string        // host:port
	key     string        // the config key that set addr: "student.ca_addr"
	flag    string        // the flag that overrides it: "--ca-addr"
	start   string        // how to start the daemon: "pkiboard --role=ca"
	listen  string        // the daemon's own key for where it listens: "ca.listen"
	timeout time.Duration // the client's bound on the exchange
	tkey    string        // the config key that set timeout: "student.timeout"
}

// studentCA and studentBoard are the student's peers as cfg names them.
func studentCA(addr string, timeout time.Duration) peer {
	return peer{daemon: "CA", addr: addr, key: "student.ca_addr", flag: "--ca-addr", start: "pkiboard --role=ca",
		listen: "ca.listen", timeout: timeout, tkey: "student.timeout"}
}

func studentBoard(addr string, timeout time.Duration) peer {
	return peer{daemon: "board", addr: addr, key: "student.board_addr", flag: "--board-addr", start: "pkiboard --role=board",
		listen: "board.listen", timeout: timeout, tkey: "student.timeout"}
}

// waitNotice is how long a client waits for an answer before it says what it
// waits for: a few seconds, or a quarter of its timeout if that is shorter.
func (p peer) waitNotice() time.Duration {
	return min(3*time.Second, p.timeout/4)
}

// ReachError is a failure to talk to a daemon that lies with where it is
// looked for, not with the request: nothing listens there, something other
// than the daemon answers, or nothing answers. Its message names the address,
// the key and flag that set it, what was found there and what to do.
type ReachError struct {
	Daemon string // "CA" or "board"
	Addr   string
	Key    string // "student.ca_addr"
	Found  string // what was found at Addr
	Remedy string // what to do
	Err    error
}

func (e *ReachError) Error() string {
	return e.Found + ": " + e.Remedy
}

// Unwrap returns the error underneath.
func (e *ReachError) Unwrap() error { return e.Err }

// errHTTP is a peer's answer that begins "HTTP/": an HTTP server's.
var errHTTP = errors.New("the answer begins with \"HTTP/\"")

// errSilent is a deadline that passed before the peer sent a single byte.
var errSilent = errors.New("no byte of an answer arrived")

// reachError returns err as a *ReachError when it says the daemon is not
// where p looks for it, and err unchanged otherwise. Only a handshake's or an
// exchange's first answer can tell a board from a CA, so handshake says
// whether err came from one.
func (p peer) reachError(err error) error {
	if err == nil {
		return nil
	}
	var re *ReachError
	if errors.As(err, &re) {
		return err
	}
	e := &ReachError{Daemon: p.daemon, Addr: p.addr, Key: p.key, Err: err}
	at := fmt.Sprintf("%s (%s or %s)", p.addr, p.key, p.flag)
	var peerErr *wire.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Found = "nothing listens on " + at
		e.Remedy = fmt.Sprintf("is the %s running? start it with `%s` (it listens on its %s), or set %s to where it listens",
			p.daemon, p.start, p.listen, p.key)
	case errors.Is(err, errHTTP):
		e.Found = fmt.Sprintf("%s is an HTTP server, not a pkiboard %s", at, p.daemon)
		e.Remedy = fmt.Sprintf("check %s: it must be where the %s listens (its %s)", p.key, p.daemon, p.listen)
	case errors.As(err, &peerErr) && p.wrongDaemon(err, peerErr):
		other := "board"
		if p.daemon == "board" {
			other = "CA"
		}
		e.Found = fmt.Sprintf("%s is a pkiboard %s, not a %s", at, other, p.daemon)
		e.Remedy = fmt.Sprintf("check %s: it must be where the %s listens (its %s)", p.key, p.daemon, p.listen)
	case errors.Is(err, errSilent):
		e.Found = fmt.Sprintf("%s accepted the connection but answered nothing in %s (%s)", at, p.timeout, p.tkey)
		e.Remedy = fmt.Sprintf("is that a pkiboard %s, and is it running, not stopped or overloaded? check %s, or raise %s",
			p.daemon, p.key, p.tkey)
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		e.Found = fmt.Sprintf("the %s at %s did not finish answering in %s (%s)", p.daemon, at, p.timeout, p.tkey)
		e.Remedy = fmt.Sprintf("try again later, or raise %s", p.tkey)
	default:
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			e.Found = fmt.Sprintf("cannot connect to %s: %v", at, op.Err)
			e.Remedy = fmt.Sprintf("check %s and the network", p.key)
			return e
		}
		return err
	}
	return e
}

// wrongDaemon reports whether the peer's refusal peerErr says it is the other
// daemon: a CA refuses a ClientHello, a board an EnrollRequest or a Fetch, as
// an unexpected message — which neither sends to the requests it serves.
func (p peer) wrongDaemon(err error, peerErr *wire.Error) bool {
	if peerErr.Code != wire.CodeUnexpectedMessage && peerErr.Code != wire.CodeUnknownMessage {
		return false
	}
	if p.daemon == "board" {
		var he *session.HandshakeError
		return errors.As(err, &he)
	}
	return true
}

// dial connects to p, through a connection that tells an HTTP server by its
// answer's first bytes, says on log what it waits for once an answer is
// waitNotice late, and reports a deadline that passed before any byte
// arrived as errSilent.
func (p peer) dial(ctx context.Context, log *zap.Logger, fields ...zap.Field) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, p.reachError(err)
	}
	return &watchedConn{Conn: nc, ctx: ctx, p: p, log: log, fields: fields}, nil
}

// watchedConn is a client's connection to a daemon; see peer.dial.
type watchedConn struct {
	net.Conn
	ctx    context.Context // the exchange's: its deadline closes the connection
	p      peer
	log    *zap.Logger
	fields []zap.Field

	mu     sync.Mutex
	got    bool // a byte has arrived
	warned bool // the wait was reported once
}

func (c *watchedConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	first, warned := !c.got, c.warned
	c.mu.Unlock()
	var t *time.Timer
	if first && !warned {
		t = time.AfterFunc(c.p.waitNotice(), func() {
			c.mu.Lock()
			c.warned = true
			c.mu.Unlock()
			c.log.Info(fmt.Sprintf("waiting for the %s at %s to answer (%s %s)", c.p.daemon, c.p.addr, c.p.tkey, c.p.timeout),
				c.fields...)
		})
	}
	n, err := c.Conn.Read(b)
	if t != nil {
		t.Stop()
	}
	if n > 0 && first {
		c.mu.Lock()
		c.got = true
		c.mu.Unlock()
		if looksHTTP(b[:n]) {
			return 0, errHTTP
		}
	}
	expired := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) && errors.Is(c.ctx.Err(), context.DeadlineExceeded)
	if err != nil && first && n == 0 && expired {
		return 0, fmt.Errorf("%w: %w", errSilent, err)
	}
	return n, err
}

// looksHTTP reports whether the first bytes of an answer are an HTTP
// server's: a status line ("HTTP/1.1 400 …"), or a page without one. No
// frame begins so: its length would be over a gigabyte.
func looksHTTP(p []byte) bool {
	for _, prefix := range []string{"HTTP/", "<!DOCTYPE", "<html"} {
		n := min(len(p), len(prefix))
		if n >= 4 && strings.EqualFold(string(p[:n]), prefix[:n]) {
			return true
		}
	}
	return false
}
