package attacklab

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"pkiboard/wire"
)

// TestTap checks the observer's relay: it forwards both ways, holds the
// client's first frame for its hook before forwarding it, records what
// crossed, and decodes the client's messages.
func TestTap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) //nolint:errcheck // the test reads what it needs
	}()
	var held []byte
	tp, err := newTap(ln.Addr().String(), func(p []byte) { held = bytes.Clone(p) })
	if err != nil {
		t.Fatal(err)
	}
	req := &wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: wire.ProfileStudent, SID: "alice", CSR: []byte("csr"),
		Auth: wire.AuthToken, TokenKey: make([]byte, 32), Signature: make([]byte, 64)}
	frame := frameOf(req)
	c, err := net.Dial("tcp", tp.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(bytes.Clone(frame), frame...)); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 2*len(frame))
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatal(err)
	}
	c.Close()
	tp.Close()
	if !bytes.Equal(back, append(bytes.Clone(frame), frame...)) {
		t.Error("the echo came back changed")
	}
	if !bytes.Equal(held, frame[wire.HeaderSize:]) {
		t.Errorf("the hook held %x, want the first frame's payload", held)
	}
	s := tp.observe()
	if s.bytes != int64(4*len(frame)) {
		t.Errorf("observed %d bytes, want %d", s.bytes, 4*len(frame))
	}
	if got := s.enrollRequests("alice", wire.AuthToken); len(got) != 2 || got[0].SID != "alice" {
		t.Errorf("decoded %d EnrollRequests of alice, want 2", len(got))
	}
	if n := s.count([][]byte{[]byte("csr")}); n != 4 {
		t.Errorf("found the CSR %d times, want 4 (twice each way)", n)
	}
}
