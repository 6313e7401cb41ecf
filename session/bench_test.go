package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// BenchmarkRecordThroughput seals and opens full 64 KiB Data records: the
// per-byte work of both ends of the record layer, without I/O.
func BenchmarkRecordThroughput(b *testing.B) {
	for _, suite := range []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256} {
		b.Run(SuiteName(suite), func(b *testing.B) {
			send, recv := recordPair(b, suite)
			plain := randomContent(wire.MaxDataChunk)
			b.SetBytes(wire.MaxDataChunk)
			b.ReportAllocs()
			for b.Loop() {
				rec, err := send.seal(append(send.buf[:0], byte(wire.TypeData)), plain)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := recv.openInPlace(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBound is the single-goroutine bound of a receiver of the default
// suite: per byte, HMAC-SHA256 verification, AES-256-CTR decryption and the
// SHA-256 of the content, over the same 64 KiB buffer, with no I/O and no
// framing.
func BenchmarkBound(b *testing.B) {
	key := make([]byte, 32)
	block, _ := aes.NewCipher(key)
	ctr := cipher.NewCTR(block, make([]byte, 16))
	mac := hmac.New(sha256.New, key)
	content := sha256.New()
	buf := randomContent(wire.MaxDataChunk)
	var hdr [recordHeaderLen]byte
	var tag, want [32]byte
	b.SetBytes(wire.MaxDataChunk)
	b.ReportAllocs()
	for b.Loop() {
		mac.Reset()
		mac.Write(hdr[:])
		mac.Write(buf)
		mac.Sum(tag[:0])
		if hmac.Equal(tag[:], want[:]) {
			b.Fatal("impossible")
		}
		ctr.XORKeyStream(buf, buf)
		content.Write(buf)
	}
}

// BenchmarkReceive is the receiver's per-byte path through a Conn, as the
// board runs it: read a frame, check the MAC, decrypt, decode, and hash the
// content. Sealing the records is not timed. Compare with BenchmarkBound.
func BenchmarkReceive(b *testing.B) {
	for _, suite := range []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256} {
		b.Run(SuiteName(suite), func(b *testing.B) {
			mc := &loopConn{buf: new(bytes.Buffer)}
			send, recv := recordPair(b, suite)
			w := &Conn{conn: wire.NewConn(mc, wire.Options{MaxFrame: boardMaxFrame}), isClient: true, out: send}
			r := &Conn{conn: wire.NewConn(mc, wire.Options{MaxFrame: boardMaxFrame}), in: recv}
			d := &wire.Data{Bytes: randomContent(wire.MaxDataChunk)}
			content := sha256.New()
			b.SetBytes(wire.MaxDataChunk)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				if err := w.WriteMessage(d); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				m, err := r.ReadMessage()
				if err != nil {
					b.Fatal(err)
				}
				content.Write(m.(*wire.Data).Bytes)
			}
		})
	}
}

// BenchmarkUpload streams 64 KiB Data records from a student Conn to a board
// Conn over loopback TCP, the board hashing the content as it arrives: the
// upload without the disk.
func BenchmarkUpload(b *testing.B) {
	for _, suite := range []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256} {
		b.Run(SuiteName(suite), func(b *testing.B) {
			ln := listen(b)
			accepted := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				accepted <- c
			}()
			sc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			bc := <-accepted
			defer sc.Close()
			defer bc.Close()
			c2sSend, c2sRecv := recordPair(b, suite)
			opts := wire.Options{MaxFrame: boardMaxFrame, ReadTimeout: -1, WriteTimeout: -1}
			w := &Conn{conn: wire.NewConn(sc, opts), isClient: true, out: c2sSend}
			r := &Conn{conn: wire.NewConn(bc, opts), in: c2sRecv}
			d := &wire.Data{Bytes: randomContent(wire.MaxDataChunk)}
			b.SetBytes(wire.MaxDataChunk)
			b.ReportAllocs()
			n := b.N
			var wg sync.WaitGroup
			wg.Add(1)
			b.ResetTimer()
			go func() {
				defer wg.Done()
				for range n {
					if err := w.WriteMessage(d); err != nil {
						b.Error(err)
						return
					}
				}
			}()
			content := sha256.New()
			for range n {
				m, err := r.ReadMessage()
				if err != nil {
					b.Fatal(err)
				}
				content.Write(m.(*wire.Data).Bytes)
			}
			wg.Wait()
		})
	}
}

// BenchmarkHandshake runs full handshakes over loopback TCP, both sides in
// this process; it reports sessions per second.
func BenchmarkHandshake(b *testing.B) {
	p := pki(b)
	for _, kt := range []string{"p256", "rsa2048"} {
		b.Run(kt, func(b *testing.B) {
			ln := listen(b)
			sc := p.serverConfig()
			go func() {
				for {
					nc, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer nc.Close()
						c, err := Server(boardWire(nc), sc)
						if err != nil {
							return
						}
						c.ReadMessage() // until the student closes
					}()
				}
			}()
			cc := p.clientConfig(kt)
			b.ReportAllocs()
			for b.Loop() {
				nc, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				c, err := Client(studentWire(nc), cc)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
		})
	}
}

// BenchmarkTLS13Handshake is the yardstick for BenchmarkHandshake: a
// crypto/tls 1.3 handshake with mutual authentication (ECDSA P-256
// certificates from the same root, the default X25519MLKEM768 key exchange)
// over loopback TCP.
func BenchmarkTLS13Handshake(b *testing.B) {
	p := pki(b)
	boardKey := p.board.key
	board := p.root.issue(certSpec{cn: testBoardName, key: boardKey, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	tmpl := *board.leaf()
	tmpl.DNSNames = []string{testBoardName}
	der, err := x509.CreateCertificate(nil, &tmpl, p.root.cert, boardKey.Public(), p.root.key)
	if err != nil {
		b.Fatal(err)
	}
	st := p.students["p256"]
	serverConf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: boardKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.root.pool,
	}
	clientConf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      p.root.pool,
		ServerName:   testBoardName,
		Certificates: []tls.Certificate{{Certificate: [][]byte{st.leaf().Raw}, PrivateKey: st.key}},
	}
	ln := listen(b)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c := tls.Server(nc, serverConf)
				defer c.Close()
				if c.Handshake() == nil {
					c.Read(make([]byte, 1))
				}
			}()
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		c := tls.Client(nc, clientConf)
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
}

// BenchmarkServerHandshake is the board's side of a handshake alone, in
// memory: the work one session costs the board. The student's hello is
// recorded once and sent again to a board with an empty replay cache each
// time (a board that remembered it would refuse it: BenchmarkHostileHello).
func BenchmarkServerHandshake(b *testing.B) {
	p := pki(b)
	for _, kt := range []string{"p256", "rsa2048"} {
		b.Run(kt, func(b *testing.B) {
			in := frame(recordHello(b, p.clientConfig(kt)))
			sc := p.serverConfig()
			b.ReportAllocs()
			for b.Loop() {
				sc.Replays = NewReplayCache(0)
				m := newMemConn(in)
				if _, err := Server(wire.NewConn(m, wire.Options{MaxFrame: boardMaxFrame}), sc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
		})
	}
}

// recordHello returns the payload of the ClientHello a student of cc sends.
func recordHello(tb testing.TB, cc *ClientConfig) []byte {
	tb.Helper()
	m := newMemConn(nil)
	Client(wire.NewConn(m, wire.Options{}), cc) // fails at EOF after the hello
	return frames(tb, m.out.Bytes())[0]
}

// hostileHellos are the hellos of issue 12's stranger, each as the board
// receives it, and how the adversary makes the next one: the figures of
// PROTOCOL.md §6.2 (what a stranger costs).
type hostileHello struct {
	name string
	code wire.Code
	// next returns the next hello to send; it is what the adversary does
	// per hello (BenchmarkHostileHelloCost times it alone).
	next func() []byte
}

func hostileHellos(b *testing.B) []hostileHello {
	p := pki(b)
	cc := p.clientConfig("p256")
	recorded := recordHello(b, cc)

	// A forged hello: a real student's certificate (public), a valid X-Wing
	// key of the adversary's (made once), a fresh random and time so that it
	// is no replay, and a well-formed signature by another key (made once),
	// which the board must verify to refuse.
	forged, err := wire.Expect[*wire.ClientHello](wire.Unmarshal(recorded))
	if err != nil {
		b.Fatal(err)
	}
	if forged.Signature, err = keys.Sign(ecKey(elliptic.P256(), "adversary"), rand.Reader, []byte("anything")); err != nil {
		b.Fatal(err)
	}
	nextForged := func() []byte {
		forged.Random[0]++
		forged.Time = uint64(time.Now().UnixMilli())
		out, _ := wire.Marshal(forged)
		return out
	}

	// The chain bomb: a certificate named as if the root had issued it, from
	// the adversary's own CA (ECDSA, so that the board's one check does
	// verify a signature), changed in a byte every time so that the board's
	// certificate cache never knows it: the last bytes of its signature, a
	// counter, which keep it well-formed.
	bomb := *forged
	leaf := bombLeaf(b, bombEC())
	bomb.Certificate = leaf
	var made uint32
	nextBomb := func() []byte {
		made++
		leaf[len(leaf)-1], leaf[len(leaf)-2], leaf[len(leaf)-3] = byte(made), byte(made>>8), byte(made>>16)
		bomb.Random[0]++
		bomb.Time = uint64(time.Now().UnixMilli())
		out, _ := wire.Marshal(&bomb)
		return out
	}
	sameBomb := func() []byte {
		bomb.Random[0]++
		bomb.Time = uint64(time.Now().UnixMilli())
		out, _ := wire.Marshal(&bomb)
		return out
	}
	return []hostileHello{
		{"replayed", wire.CodeStaleHello, func() []byte { return recorded }},
		{"forged-signature", wire.CodeBadHelloSignature, nextForged},
		{"chain-bomb-new-each-time", wire.CodeUnknownCA, nextBomb},
		{"chain-bomb-repeated", wire.CodeUnknownCA, sameBomb},
	}
}

// BenchmarkHostileHello is the board's CPU per hostile hello (issue 12: a
// replayed hello cost 325-438 µs in version 1, a chain bomb 55 ms): each
// iteration is one hello through Server, in memory, refused in step 3. The
// adversary's cost to make each is BenchmarkHostileHelloCost; a proven
// session's is BenchmarkServerHandshake.
func BenchmarkHostileHello(b *testing.B) {
	p := pki(b)
	for _, h := range hostileHellos(b) {
		b.Run(h.name, func(b *testing.B) {
			sc := p.serverConfig()
			if h.code == wire.CodeStaleHello { // the board saw the original session
				if _, err := Server(wire.NewConn(newMemConn(frame(h.next())), wire.Options{MaxFrame: boardMaxFrame}), sc); err != nil {
					b.Fatal(err)
				}
			}
			hellos := make([][]byte, b.N) // made before the clock runs
			for i := range hellos {
				hellos[i] = frame(h.next())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				m := newMemConn(hellos[i])
				_, err := Server(wire.NewConn(m, wire.Options{MaxFrame: boardMaxFrame}), sc)
				if wire.CodeOf(err) != h.code {
					b.Fatalf("got %v, want %v", err, h.code)
				}
			}
		})
	}
}

// BenchmarkHostileHelloCost is the adversary's cost to make each hostile
// hello of BenchmarkHostileHello (not to send it).
func BenchmarkHostileHelloCost(b *testing.B) {
	for _, h := range hostileHellos(b) {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = frame(h.next())
			}
		})
	}
}
