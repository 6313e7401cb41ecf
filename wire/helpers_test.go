package wire

import (
	"errors"
	"flag"
	"net"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files and seed corpora under testdata/")

// tcpPair returns the two ends of a loopback TCP connection on an ephemeral port.
// Both are closed when the test ends.
func tcpPair(tb testing.TB) (client, server net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
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
		tb.Fatalf("dial: %v", err)
	}
	r := <-accepted
	if r.err != nil {
		client.Close()
		tb.Fatalf("accept: %v", r.err)
	}
	tb.Cleanup(func() {
		client.Close()
		r.c.Close()
	})
	return client, r.c
}

// pipePair returns the two ends of a net.Pipe, closed when the test ends.
func pipePair(tb testing.TB) (a, b net.Conn) {
	a, b = net.Pipe()
	tb.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

// transports lists the connection kinds tests run over.
var transports = []struct {
	name string
	pair func(testing.TB) (net.Conn, net.Conn)
}{
	{"tcp", tcpPair},
	{"pipe", pipePair},
}

// guardOptions are Conn options for tests: a read that hangs fails the test with
// a deadline error instead of hanging it.
var guardOptions = Options{ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}

// msgQueue is an in-memory MessageReadWriter: reads come from in, writes go to
// out.
type msgQueue struct {
	in  []Message
	out []Message
}

func (q *msgQueue) ReadMessage() (Message, error) {
	if len(q.in) == 0 {
		return nil, errEndOfQueue
	}
	m := q.in[0]
	q.in = q.in[1:]
	return m, nil
}

func (q *msgQueue) WriteMessage(m Message) error {
	q.out = append(q.out, m)
	return nil
}

var errEndOfQueue = &net.OpError{Op: "read", Err: net.ErrClosed}

// isRefusal reports whether err's chain holds a *Refusal of code.
func isRefusal(err error, code Code) bool {
	var r *Refusal
	return errors.As(err, &r) && r.Code == code
}
