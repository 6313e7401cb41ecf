package ca

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"pkiboard/internal/fuzzseed"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// The modes of a FuzzWatch input (its first value, a bit set).
const (
	// fuzzWatchProven: the harness opens a proper watch with the board's
	// key and reads the first StatusUpdate; the stream then follows as what
	// the board sends on the watch (its acks).
	fuzzWatchProven = 1 << 0
	// fuzzWatchCert: in the first frame's body, each "{cert}" stands for the
	// DER of the board certificate the CA issued in this run.
	fuzzWatchCert = 1 << 1
)

// fuzzCertMark is the placeholder of fuzzWatchCert.
var fuzzCertMark = []byte("{cert}")

// frame returns payload as a frame.
func frame(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// msgFrame returns m as a frame.
func msgFrame(m wire.Message) []byte {
	p, err := wire.Marshal(m)
	if err != nil {
		panic(err)
	}
	return frame(p)
}

// watchSeeds returns the seeds of FuzzWatch: (mode, the body of the first
// frame, a WatchRequest unless proven; the rest of the stream).
func watchSeeds() map[string][]any {
	body := func(version uint16, cert []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, version)
		b = binary.BigEndian.AppendUint16(b, uint16(len(cert)))
		return append(b, cert...)
	}
	proof := msgFrame(&wire.WatchProof{Signature: bytes.Repeat([]byte{0x30}, 70)})
	ack := func(n uint64) []byte { return msgFrame(&wire.StatusAck{CRLNumber: n}) }
	return map[string][]any{
		"request-then-bad-proof":  {uint8(fuzzWatchCert), body(2, fuzzCertMark), proof},
		"request-version-1":       {uint8(fuzzWatchCert), body(1, fuzzCertMark), []byte{}},
		"request-not-a-cert":      {uint8(0), body(2, []byte("not a certificate")), proof},
		"request-empty-cert":      {uint8(0), body(2, nil), []byte{}},
		"request-trailing":        {uint8(fuzzWatchCert), append(body(2, fuzzCertMark), 0), proof},
		"request-then-enroll":     {uint8(fuzzWatchCert), body(2, fuzzCertMark), msgFrame(&wire.Fetch{Name: "crl.pem"})},
		"request-then-huge-frame": {uint8(fuzzWatchCert), body(2, fuzzCertMark), []byte{0xff, 0xff, 0xff, 0xff, 0x15}},
		"proven-acks":             {uint8(fuzzWatchProven), []byte{}, append(ack(1), ack(2)...)},
		"proven-ack-huge-number":  {uint8(fuzzWatchProven), []byte{}, ack(^uint64(0))},
		"proven-other-message":    {uint8(fuzzWatchProven), []byte{}, proof},
		"proven-truncated-ack":    {uint8(fuzzWatchProven), []byte{}, ack(1)[:7]},
		"proven-garbage":          {uint8(fuzzWatchProven), []byte{}, []byte("\x00\x00\x00\x01\x99")},
	}
}

func TestFuzzWatchCorpus(t *testing.T) {
	seeds := watchSeeds()
	if *update {
		if err := fuzzseed.Write("FuzzWatch", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzWatch", seeds, true, "run go test ./ca -run TestFuzzWatchCorpus -update")
}

// FuzzWatch feeds arbitrary bytes to the CA's side of a board's watch,
// through ServeConn: as the first request (a WatchRequest frame whose body
// is the input's, then the rest of the stream), or after a watch proven
// with the board's key (the stream is then what the board answers). The CA
// must answer only with its own messages, never panic, end the connection
// when the stream ends, and hold no watch afterwards.
func FuzzWatch(f *testing.F) {
	for _, s := range watchSeeds() {
		f.Add(s[0].(uint8), s[1].([]byte), s[2].([]byte))
	}
	tc := newCA(f, nil)
	board, key := tc.issueCert(f, wire.ProfileBoard, testBoard)
	srv := &Server{
		Authority:        tc.Authority,
		Wire:             wire.Options{MaxFrame: 64 << 10, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second},
		HandshakeTimeout: 5 * time.Second,
		IdleTimeout:      5 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	f.Fuzz(func(t *testing.T, mode uint8, first, rest []byte) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan struct{})
		go func() {
			defer close(served)
			defer server.Close()
			srv.ServeConn(context.Background(), server, nil)
		}()
		client.SetDeadline(time.Now().Add(20 * time.Second))
		cw := wire.NewConn(client, wire.Options{MaxFrame: wire.MaxCRLLen + 1<<10})

		if mode&fuzzWatchProven != 0 {
			if err := cw.WriteMessage(&wire.WatchRequest{Version: wire.ProtocolVersion, Certificate: board.Raw}); err != nil {
				t.Fatal(err)
			}
			ch, err := wire.Expect[*wire.WatchChallenge](cw.ReadMessage())
			if err != nil {
				t.Fatal(err)
			}
			sig, err := keys.Sign(key, nil, wire.WatchSignedBytes(ch.Nonce, board.Raw))
			if err != nil {
				t.Fatal(err)
			}
			if err := cw.WriteMessage(&wire.WatchProof{Signature: sig}); err != nil {
				t.Fatal(err)
			}
			if _, err := wire.Expect[*wire.StatusUpdate](cw.ReadMessage()); err != nil {
				t.Fatalf("no StatusUpdate after a proven watch: %v", err)
			}
		} else {
			body := first
			if mode&fuzzWatchCert != 0 {
				body = bytes.ReplaceAll(first, fuzzCertMark, board.Raw)
			}
			rest = append(frame(append([]byte{byte(wire.TypeWatchRequest)}, body...)), rest...)
		}

		// What the CA sends from here, until it closes: each frame must be
		// one of its messages.
		read := make(chan error, 1)
		go func() {
			for {
				m, err := cw.ReadMessage()
				switch {
				case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), wire.PeerGone(err):
					read <- nil
					return
				case err != nil:
					read <- err
					return
				}
				switch m.(type) {
				case *wire.Error, *wire.WatchChallenge, *wire.StatusUpdate:
				default:
					read <- fmt.Errorf("the CA sent a %v", m.Type())
					return
				}
			}
		}()
		client.Write(rest)                 //nolint:errcheck // the CA may have closed first
		client.(*net.TCPConn).CloseWrite() //nolint:errcheck // the end of the stream
		<-served
		if err := <-read; err != nil {
			t.Fatal(err)
		}
		if n := tc.Watching(); n != 0 {
			t.Fatalf("%d watches held after the connection ended", n)
		}
	})
}
