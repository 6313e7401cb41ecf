package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// TestLingerClose checks what LingerClose does for a peer in mid-upload that
// is sent a refusal: the rest of its upload is drained rather than refused
// with a reset (a plain Close with unread data fails the upload), it then reads
// the frame written before the close, and then EOF.
func TestLingerClose(t *testing.T) {
	client, server := tcpPair(t)
	defer client.Close()
	const upload = 32 << 20 // more than the socket buffers hold
	uploaded := make(chan error, 1)
	go func() {
		client.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := client.Write(make([]byte, upload))
		uploaded <- err
	}()
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(server, []byte("refused")); err != nil {
		t.Fatal(err)
	}
	go LingerClose(server, 10*time.Second, 2*upload)

	if err := <-uploaded; err != nil {
		t.Errorf("the upload after the refusal: %v, want it drained", err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := ReadFrame(client, DefaultMaxFrame, nil)
	if err != nil || !bytes.Equal(got, []byte("refused")) {
		t.Errorf("the uploading peer read %q, %v; want the frame written before the close", got, err)
	}
	client.(interface{ CloseWrite() error }).CloseWrite() // the upload is over: the drain ends
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("after the frame: %v, want EOF", err)
	}
}
