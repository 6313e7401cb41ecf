package attacklab

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"

	"pkiboard/wire"
)

// maxTapped bounds what a tap records of one connection in each direction.
const maxTapped = 4 << 20

// A tap is a TCP relay on the path to a server (the CA, or the board) that
// records every byte it relays, as an observer of the network would see
// them. With a hold hook it is also a proxy that acts on a client's first
// frame before it forwards it (the proxy of the race for a token).
type tap struct {
	ln       net.Listener
	upstream string
	// hold, if set, is called with the payload of each connection's first
	// frame from the client, before the frame is forwarded: it may delay
	// it, and act meanwhile.
	hold func(payload []byte)

	mu     sync.Mutex
	conns  []*tapped             // every connection relayed, in accept order
	open   map[net.Conn]struct{} // connections to close on Close
	closed bool
	wg     sync.WaitGroup
}

// tapped is what a tap saw of one connection.
type tapped struct {
	mu       sync.Mutex
	toServer []byte // from the client, as it crossed the wire
	toClient []byte // from the server
}

// newTap listens on an ephemeral loopback port and relays each connection to
// upstream until Close.
func newTap(upstream string, hold func(payload []byte)) (*tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tap{ln: ln, upstream: upstream, hold: hold, open: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// Addr is where clients connect instead of the server.
func (t *tap) Addr() string { return t.ln.Addr().String() }

// Close stops the tap: it closes the listener and every connection, and
// returns once every relay has ended.
func (t *tap) Close() {
	t.mu.Lock()
	t.closed = true
	t.ln.Close()
	for c := range t.open {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// track registers c to be closed by Close; it reports false (and closes c)
// if the tap is closed already.
func (t *tap) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.open[c] = struct{}{}
	return true
}

func (t *tap) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.open, c)
	t.mu.Unlock()
	c.Close()
}

// accept relays every connection; it returns when the listener is closed.
func (t *tap) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		if !t.track(c) {
			continue
		}
		rec := &tapped{}
		t.mu.Lock()
		t.conns = append(t.conns, rec)
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.untrack(c)
			t.relay(c, rec)
		}()
	}
}

// relay copies both ways between the client c and a new connection to the
// server, recording what passes, until either side closes.
func (t *tap) relay(c net.Conn, rec *tapped) {
	s, err := net.DialTimeout("tcp", t.upstream, 10*time.Second)
	if err != nil {
		return
	}
	if !t.track(s) {
		return
	}
	defer t.untrack(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(recorder{c, rec, true}, s) //nolint:errcheck // either side closing ends the relay
		c.Close()
	}()
	if t.hold != nil {
		if p, err := wire.ReadFrame(c, wire.MaxFirstFrameCA, nil); err == nil {
			frame := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
			frame = append(frame, p...)
			rec.add(true, frame)
			t.hold(p)
			s.Write(frame) //nolint:errcheck // a closed server shows in the copy below
		}
	}
	io.Copy(recorder{s, rec, false}, c) //nolint:errcheck // either side closing ends the relay
	s.Close()
	<-done
}

// recorder writes to w and records what it wrote.
type recorder struct {
	w        io.Writer
	rec      *tapped
	toClient bool
}

func (r recorder) Write(p []byte) (int, error) {
	r.rec.add(!r.toClient, p)
	return r.w.Write(p)
}

// add records p, sent to the server (toServer) or to the client.
func (t *tapped) add(toServer bool, p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	dst := &t.toClient
	if toServer {
		dst = &t.toServer
	}
	if n := min(len(p), maxTapped-len(*dst)); n > 0 {
		*dst = append(*dst, p[:n]...)
	}
}

// conversation is a copy of what a tap saw of one connection.
type conversation struct {
	toServer, toClient []byte
}

// recorded returns copies of what the tap saw, connection by connection.
func (t *tap) recorded() []conversation {
	t.mu.Lock()
	conns := append([]*tapped(nil), t.conns...)
	t.mu.Unlock()
	out := make([]conversation, len(conns))
	for i, c := range conns {
		c.mu.Lock()
		out[i] = conversation{bytes.Clone(c.toServer), bytes.Clone(c.toClient)}
		c.mu.Unlock()
	}
	return out
}

// seen is what an observer makes of the bytes a tap recorded: their total,
// and the messages the clients sent, decoded.
type seen struct {
	bytes    int64
	streams  [][]byte       // every connection's bytes, each direction apart
	requests []wire.Message // every message a client sent, in order
}

// observe decodes what t recorded.
func (t *tap) observe() seen {
	var s seen
	for _, c := range t.recorded() {
		s.bytes += int64(len(c.toServer) + len(c.toClient))
		s.streams = append(s.streams, c.toServer, c.toClient)
		r := bytes.NewReader(c.toServer)
		for {
			p, err := wire.ReadFrame(r, maxTapped, nil)
			if err != nil {
				break
			}
			m, err := wire.Unmarshal(p)
			if err != nil {
				break
			}
			s.requests = append(s.requests, m)
		}
	}
	return s
}

// enrollRequests returns the EnrollRequests s holds for sid (any, if "")
// with auth, in order.
func (s seen) enrollRequests(sid string, auth uint8) []*wire.EnrollRequest {
	var out []*wire.EnrollRequest
	for _, m := range s.requests {
		if r, ok := m.(*wire.EnrollRequest); ok && (sid == "" || r.SID == sid) && r.Auth == auth {
			out = append(out, r)
		}
	}
	return out
}

// count returns how many times any of needles occurs in what s holds.
func (s seen) count(needles [][]byte) int {
	n := 0
	for _, st := range s.streams {
		for _, needle := range needles {
			if len(needle) > 0 {
				n += bytes.Count(st, needle)
			}
		}
	}
	return n
}

// frameOf returns a message as a frame: its length, then its payload.
func frameOf(m wire.Message) []byte {
	p, err := wire.Marshal(m)
	if err != nil {
		panic(err)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}
