package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"pkiboard/rc4"
	"pkiboard/session"
	"pkiboard/wire"
)

// upload measures an encrypted upload of a large report, student to board on
// loopback, per suite, against the single-goroutine bound of the receiving
// side's per-byte work with no I/O, and records the board's peak RSS.
func (r *runner) upload() []row {
	size := int64(*uploadMiB) << 20
	in := newInstall(map[string]string{"board": "allow_rc4 = true\nmax_submission = \"4GiB\""})
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

	var rows []row
	for _, suite := range []uint16{session.SuiteAES256GCM, session.SuiteAES256CTRHMACSHA256, session.SuiteRC4HMACSHA256} {
		name := session.SuiteName(suite)
		var ours, bound, rss []float64
		for i := range r.count {
			// A fresh board each run, so each upload is new and the store stays small.
			os.RemoveAll(in.path("data/board"))
			board := in.start(r.bin, "board", "--ca-addr", ca.addr)
			start := time.Now()
			if err := uploadOnce(board.addr, s, suite, f, size, sum); err != nil {
				fatalf("upload %s: %v", name, err)
			}
			secs := time.Since(start).Seconds()
			rss = append(rss, float64(board.peakRSS())/(1<<20))
			board.stop()
			ours = append(ours, float64(size)/secs/1e6)
			bound = append(bound, receiverBound(suite))
			logf("upload %s run %d: %.0f MB/s, bound %.0f MB/s, board peak RSS %.1f MiB", name, i+1, ours[i], bound[i], rss[i])
		}
		r.raw("upload %s MB/s: %v; bound %v; board peak RSS MiB %v", name, ours, bound, rss)
		target := 0.8
		if suite == session.SuiteRC4HMACSHA256 {
			target = 0
		}
		rows = append(rows,
			row{
				name:     fmt.Sprintf("encrypted upload of a %d MiB report, %s", size>>20, name),
				baseline: "receiver's per-byte work in one goroutine, no I/O (AEAD open, or HMAC-SHA256 verify + cipher; + SHA-256 of content)",
				unit:     "MB/s", ours: ours, base: bound, target: target,
			},
			row{
				name:     fmt.Sprintf("board peak RSS during the %s upload", name),
				baseline: "target < 64 MiB", unit: "MiB", ours: rss,
				note: fmt.Sprintf("max %.1f MiB: %s", maxOf(rss), yesNo(maxOf(rss) < 64)),
			},
		)
	}
	return rows
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
// ciphertext, the cipher, and SHA-256 of the plaintext.
func receiverBound(suite uint16) float64 {
	const total = 256 << 20
	key := make([]byte, 32)
	buf := make([]byte, wire.MaxDataChunk)
	rand.NewChaCha8([32]byte{1}).Read(buf)
	mac := hmac.New(sha256.New, key)
	content := sha256.New()
	var xor func(dst, src []byte)
	if suite == session.SuiteAES256CTRHMACSHA256 {
		block, _ := aes.NewCipher(key)
		xor = cipher.NewCTR(block, make([]byte, 16)).XORKeyStream
	} else {
		c, _ := rc4.NewCipherDrop(key, rc4.RFC4345Discard)
		xor = c.XORKeyStream
	}
	if suite == session.SuiteAES256GCM {
		return gcmReceiverBound(key, buf, content, total)
	}
	var hdr [13]byte
	var tag [32]byte
	start := time.Now()
	for range total / len(buf) {
		recordWork(mac, content, xor, hdr[:], buf, tag[:])
	}
	return total / time.Since(start).Seconds() / 1e6
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
