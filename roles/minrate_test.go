package roles

import (
	"io"
	"net"
	"testing"
	"time"

	"pkiboard/ca"
)

// TestKeepOpenLiftsMinRate checks that a connection told KeepOpen — a
// board's watch on the CA, where the CA talks and the board answers now and
// then — is not cut off for sending less than MinRate, as a client is.
func TestKeepOpenLiftsMinRate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const window = 100 * time.Millisecond
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rc := withMinRate(sc, window)
	ll, ok := rc.(ca.LongLived)
	if !ok {
		t.Fatal("a daemon's connection cannot be told KeepOpen")
	}
	ll.KeepOpen()
	// Silent for three windows, then a few bytes and the end.
	go func() {
		time.Sleep(3 * window)
		c.Write([]byte("ack")) //nolint:errcheck // the reader reports
		c.Close()
	}()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != "ack" {
		t.Errorf("a connection told KeepOpen: read %q, %v; want \"ack\" and no error", got, err)
	}
}
