package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"hash"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"pkiboard/rc4"
	"pkiboard/session"
	"pkiboard/wire"
)

// upload measures an encrypted upload of a large report, student to board on
// loopback, per suite, against a crypto/tls 1.3 upload of the same bytes
// between two processes with the same certificates (the server hashes them
// with SHA-256, writes them to a file and fsyncs it, as the board does), and
// against the single-goroutine bound of the receiving side's per-byte work
// with no I/O (the limit row); and records the board's peak RSS. The runs
// alternate: ours, then TLS, then the bound.
func (r *runner) upload() []row {
	size := int64(*uploadMiB) << 20
	in := newInstall(map[string]string{"board": "allow_rc4 = true\nmax_submission = \"4GiB\"\npartial_quota = \"8GiB\""})
	defer in.remove()
	ca := in.start(r.bin, "ca")
	defer ca.stop()
	s := enrollStudents(in, ca.addr, "ecdsa-p256", 1)[0]

	report := in.path("report.bin")
	sum := writeRandom(report, size)
	f, err := os.Open(report)
	if err != nil {
		fatalf("%v", err)
	}
	defer f.Close()

	// The TLS peer serves with the board's key and certificate: start a
	// board once to have them.
	first := in.start(r.bin, "board", "--ca-addr", ca.addr)
	first.stop()
	peer := startTLSPeer(in, "tls-upload")
	defer peer.stop()

	var rows []row
	for i, suite := range session.Suites() {
		name := session.SuiteName(suite)
		var ours, tlsRate, bound, rss []float64
		var cpu, ownCPU, tlsCPU, tlsOwnCPU []float64 // µs per MB
		var tlsSuite uint16
		for run := range r.count {
			// A fresh store each run, so each upload is new and the store
			// stays small; the board keeps its identity (its token is spent).
			emptyBoardStore(in)
			board := in.start(r.bin, "board", "--ca-addr", ca.addr)
			m := meterCPU(board.cmd.Process.Pid)
			start := time.Now()
			if err := uploadOnce(board.addr, s, suite, f, size, sum); err != nil {
				fatalf("upload %s: %v", name, err)
			}
			secs := time.Since(start).Seconds()
			ours = append(ours, float64(size)/secs/1e6)
			c, o := m.perOp(ours[run])
			cpu, ownCPU = append(cpu, c), append(ownCPU, o)
			rss = append(rss, float64(board.peakRSS())/(1<<20))
			board.stop()

			m = meterCPU(peer.cmd.Process.Pid)
			start = time.Now()
			if tlsSuite, err = tlsUploadOnce(peer.addr, s, f, size, sum); err != nil {
				fatalf("tls upload: %v", err)
			}
			tlsRate = append(tlsRate, float64(size)/time.Since(start).Seconds()/1e6)
			c, o = m.perOp(tlsRate[run])
			tlsCPU, tlsOwnCPU = append(tlsCPU, c), append(tlsOwnCPU, o)

			if b, ok := receiverBound(suite); ok {
				bound = append(bound, b)
			}
			logf("upload %s run %d: %.0f MB/s, TLS 1.3 %.0f MB/s, board peak RSS %.1f MiB", name, run+1, ours[run], tlsRate[run], rss[run])
		}
		r.raw("upload %s MB/s: %v; TLS 1.3 (%s) %v; bound %v; board peak RSS MiB %v", name, ours, tls.CipherSuiteName(tlsSuite), tlsRate, bound, rss)
		target := 0.0
		if i == 0 { // the default suite: the first in the order of preference
			target = 1.0
		}
		rows = append(rows, row{
			name: fmt.Sprintf("upload, %s, %d MiB", name, size>>20),
			baseline: fmt.Sprintf("crypto/tls 1.3 upload (%s), mTLS with the same certificates, SHA-256, write, fsync",
				tls.CipherSuiteName(tlsSuite)),
			unit: "MB/s", ours: ours, base: tlsRate, target: target,
		}, row{
			// CPU per MB, in µs, is also core-seconds per TB: the per-byte
			// cost README's "Where one machine ends" works from.
			name: "  CPU per MB: the board process",
			baseline: fmt.Sprintf("the student (this program): %.0f µs; TLS 1.3: server %.0f µs, client %.0f µs",
				median(ownCPU), median(tlsCPU), median(tlsOwnCPU)),
			unit: "µs", ours: cpu, note: "diagnostic",
		})
		r.raw("upload %s CPU µs per MB: board %v, student %v; TLS 1.3 server %v, client %v", name, cpu, ownCPU, tlsCPU, tlsOwnCPU)
		if bound != nil {
			rows = append(rows, row{
				name:     fmt.Sprintf("  limit: the same upload against the receiver's per-byte work, %s", name),
				baseline: fmt.Sprintf("%s in one goroutine, no I/O", boundWork(suite)),
				unit:     "MB/s", ours: ours, base: bound,
			})
		}
		rows = append(rows, row{
			name:     fmt.Sprintf("board peak RSS during the %s upload", name),
			baseline: "target < 64 MiB", unit: "MiB", ours: rss,
			note: fmt.Sprintf("max %.1f MiB: %s", maxOf(rss), yesNo(maxOf(rss) < 64)),
		})
	}
	return rows
}

// emptyBoardStore removes the board's store (its database, content and
// partial uploads) and keeps its key and certificates.
func emptyBoardStore(in *install) {
	entries, err := os.ReadDir(in.path("data/board"))
	if err != nil {
		fatalf("%v", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pem") {
			os.RemoveAll(in.path("data/board", e.Name()))
		}
	}
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func yesNo(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func uploadOnce(addr string, s *student, suite uint16, f *os.File, size int64, sum [32]byte) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	wc.SetDeadline(time.Now().Add(30 * time.Second))
	sc, err := session.Client(wc, &session.ClientConfig{
		SID: s.sid, Certificate: s.cert, Key: s.key, Root: s.root, BoardName: "blackboard",
		Suites: []uint16{suite},
	})
	if err != nil {
		return err
	}
	defer sc.Close()
	_, _, err = sc.Submit(session.NewSubmitRequest("lab", "report.bin", size, sum), f, session.SubmitOptions{})
	return err
}

// writeRandom writes size pseudo-random bytes to path and returns their SHA-256.
func writeRandom(path string, size int64) [32]byte {
	f, err := os.Create(path)
	if err != nil {
		fatalf("%v", err)
	}
	defer f.Close()
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{42})
	buf := make([]byte, 4<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		b := buf[:min(int64(len(buf)), left)]
		rng.Read(b)
		f.Write(b)
		h.Write(b)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// receiverBound returns the MB/s of the board's per-byte work for suite done in
// one goroutine with no I/O: per 64 KiB record, HMAC-SHA256 over the header and
// ciphertext, the cipher, and SHA-256 of the plaintext. ok is false for a
// suite whose work it does not know.
func receiverBound(suite uint16) (mbps float64, ok bool) {
	const total = 256 << 20
	key := make([]byte, 32)
	buf := make([]byte, wire.MaxDataChunk)
	rand.NewChaCha8([32]byte{1}).Read(buf)
	mac := hmac.New(sha256.New, key)
	content := sha256.New()
	var xor func(dst, src []byte)
	switch session.SuiteName(suite) {
	case "aes-256-ctr-hmac-sha256":
		block, _ := aes.NewCipher(key)
		xor = cipher.NewCTR(block, make([]byte, 16)).XORKeyStream
	case "rc4-hmac-sha256":
		c, _ := rc4.NewCipherDrop(key, rc4.RFC4345Discard)
		xor = c.XORKeyStream
	case "aes-256-gcm":
		return gcmReceiverBound(key, buf, content, total), true
	default:
		return 0, false
	}
	var hdr [13]byte
	var tag [32]byte
	start := time.Now()
	for range total / len(buf) {
		recordWork(mac, content, xor, hdr[:], buf, tag[:])
	}
	return total / time.Since(start).Seconds() / 1e6, true
}

// boundWork says what receiverBound measures for suite.
func boundWork(suite uint16) string {
	if suite == session.SuiteAES256GCM {
		return "AES-256-GCM open + SHA-256 of content"
	}
	return "HMAC-SHA256 verify + " + strings.TrimSuffix(session.SuiteName(suite), "-hmac-sha256") + " + SHA-256 of content"
}

// gcmReceiverBound is receiverBound for aes-256-gcm: per 64 KiB record,
// GCM's open in place, and SHA-256 of the plaintext.
func gcmReceiverBound(key, buf []byte, content hash.Hash, total int) float64 {
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce, aad := make([]byte, 12), make([]byte, 5)
	rec := gcm.Seal(nil, nonce, buf, aad)
	out := make([]byte, len(buf))
	start := time.Now()
	for range total / len(buf) {
		plain, err := gcm.Open(out[:0], nonce, rec, aad) // out of place: rec stays whole
		if err != nil {
			fatalf("gcm bound: %v", err)
		}
		content.Write(plain)
	}
	return float64(total) / time.Since(start).Seconds() / 1e6
}

func recordWork(mac hash.Hash, content hash.Hash, xor func(dst, src []byte), hdr, buf, tag []byte) {
	mac.Reset()
	mac.Write(hdr)
	mac.Write(buf)
	mac.Sum(tag[:0])
	hmac.Equal(tag, tag)
	xor(buf, buf)
	content.Write(buf)
}
