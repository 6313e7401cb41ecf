package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"pkiboard/internal/fuzzseed"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// The fuzz targets run whole handshakes in-process over a memConn, with the
// deterministic test PKI, a deterministic random source, a fixed clock, a
// fixed X-Wing key and, for the signatures Go's ECDSA randomizes, the
// process-wide random source fixed by cryptotest.SetGlobalRandom: the
// student's ClientHello, signature included, is the same in every process, so
// a ServerHello recorded once (in the committed seeds) still completes the
// handshake, and the fuzzer starts from inputs that reach every check.

// fixRandom fixes crypto/rand, and so ECDSA signatures, for the rest of t.
func fixRandom(tb testing.TB) {
	if t, ok := tb.(*testing.T); ok {
		cryptotest.SetGlobalRandom(t, 1)
	}
}

// fuzzClientConfig is the deterministic student of the fuzz targets.
func fuzzClientConfig(tb testing.TB) *ClientConfig {
	cc := pki(tb).clientConfig("p256")
	cc.Rand = detRand(1)
	cc.Now = func() time.Time { return fixedNow }
	cc.testHookKEMKey = func() (hpke.PrivateKey, error) {
		seed := sha256.Sum256([]byte("pkiboard fuzz x-wing"))
		return hpke.MLKEM768X25519().DeriveKeyPair(seed[:])
	}
	cc.MinCRLNumber = fuzzMinCRL
	return cc
}

// fuzzMinCRL is the highest CRL number the fuzz student has seen: the test
// status's.
const fuzzMinCRL = testCRLNumber

// fuzzServerConfig is the board of the fuzz targets, with a replay cache of
// its own.
func fuzzServerConfig(tb testing.TB) *ServerConfig {
	sc := pki(tb).serverConfig()
	sc.Rand = detRand(2)
	sc.Now = func() time.Time { return fixedNow }
	sc.AllowRC4 = true
	return sc
}

// clientHello returns the payload of the ClientHello the fuzz student sends,
// after hook (if set) changed it, before the student signed it; it fixes
// crypto/rand (fixRandom) for the signature.
func clientHello(tb testing.TB, hook func(*wire.ClientHello)) []byte {
	return clientHelloHooks(tb, hook, nil)
}

// clientHelloHooks is clientHello with a hook before the signature and one
// after (an adversary's change).
func clientHelloHooks(tb testing.TB, before, after func(*wire.ClientHello)) []byte {
	cc := fuzzClientConfig(tb)
	cc.testHookClientHello = before
	cc.testHookSignedHello = after
	fixRandom(tb)
	m := newMemConn(nil)
	Client(wire.NewConn(m, wire.Options{}), cc) // fails at EOF after the hello
	return frames(tb, m.out.Bytes())[0]
}

// serverFlight returns the ServerHello and ServerVerify payloads a real board
// answers the fuzz student's hello with.
func serverFlight(tb testing.TB, hook func(*wire.ServerHello)) (sh, sv []byte) {
	sc := fuzzServerConfig(tb)
	sc.testHookServerHello = hook
	m := newMemConn(frame(clientHello(tb, nil)))
	if _, err := Server(wire.NewConn(m, wire.Options{MaxFrame: boardMaxFrame}), sc); err != nil {
		tb.Fatalf("the fuzz board refused the fuzz student: %v", err)
	}
	f := frames(tb, m.out.Bytes())
	return f[0], f[1]
}

func serverHandshakeSeeds(tb testing.TB) map[string][]any {
	valid := clientHello(tb, nil)
	hooked := func(f func(*wire.ClientHello)) []any { return []any{clientHello(tb, f)} }
	tampered := func(f func(*wire.ClientHello)) []any { return []any{clientHelloHooks(tb, nil, f)} }
	p := pki(tb)
	return map[string][]any{
		"valid":          {valid},
		"empty":          {[]byte{}},
		"truncated":      {valid[:len(valid)/2]},
		"trailing":       {append(bytes.Clone(valid), 0)},
		"version-1":      hooked(func(ch *wire.ClientHello) { ch.Version = 1 }),
		"version-3":      hooked(func(ch *wire.ClientHello) { ch.Version = 3 }),
		"time-old":       hooked(func(ch *wire.ClientHello) { ch.Time -= uint64(time.Hour.Milliseconds()) }),
		"time-future":    hooked(func(ch *wire.ClientHello) { ch.Time += uint64(time.Hour.Milliseconds()) }),
		"time-max":       hooked(func(ch *wire.ClientHello) { ch.Time = 1<<64 - 1 }),
		"rc4-only":       hooked(func(ch *wire.ClientHello) { ch.Suites = []uint16{SuiteRC4HMACSHA256} }),
		"unknown-suites": hooked(func(ch *wire.ClientHello) { ch.Suites = []uint16{7, 8, 9} }),
		"kem-x25519":     hooked(func(ch *wire.ClientHello) { ch.KEM = 0x0020 }),
		"kem-short":      hooked(func(ch *wire.ClientHello) { ch.KEMPublic = ch.KEMPublic[:1215] }),
		"sid-other":      hooked(func(ch *wire.ClientHello) { ch.SID = "1155000002" }),
		"cert-garbage":   hooked(func(ch *wire.ClientHello) { ch.Certificate = []byte{0x30, 0x03, 1, 2, 3} }),
		"cert-board":     hooked(func(ch *wire.ClientHello) { ch.Certificate = p.board.leaf().Raw }),
		"cert-root":      hooked(func(ch *wire.ClientHello) { ch.Certificate = p.root.cert.Raw }),
		"cert-other-ca":  hooked(func(ch *wire.ClientHello) { ch.Certificate = p.otherStudent().leaf().Raw }),
		"sig-flipped":    tampered(func(ch *wire.ClientHello) { ch.Signature[len(ch.Signature)-1] ^= 1 }),
		"sig-suites":     tampered(func(ch *wire.ClientHello) { ch.Suites = []uint16{SuiteRC4HMACSHA256} }),
		"error-message":  {mustMarshal(tb, &wire.Error{Code: wire.CodeBusy, Text: "no"})},
		"server-hello": {mustMarshal(tb, &wire.ServerHello{Version: wire.ProtocolVersion, KeyTransport: 2, EncryptedKey: []byte{1},
			KEMCiphertext: []byte{1}, Certificate: []byte{1}, Status: []byte{1}})},
		"unknown-type":    {[]byte{0x99, 0, 1}},
		"version-only-v2": {[]byte{byte(wire.TypeClientHello), 0, 2}},
	}
}

func clientHandshakeSeeds(tb testing.TB) map[string][]any {
	sh, sv := serverFlight(tb, nil)
	flipped := func(p []byte, off int) []byte {
		p = bytes.Clone(p)
		p[(off+len(p))%len(p)] ^= 1
		return p
	}
	hooked := func(f func(*wire.ServerHello)) []any {
		sh, sv := serverFlight(tb, f)
		return []any{sh, sv}
	}
	p := pki(tb)
	withStatus := func(change func(*wire.BoardStatus)) []any {
		status := p.boardStatus(tb, change)
		return hooked(func(sh *wire.ServerHello) { sh.Status = status })
	}
	return map[string][]any{
		"valid":            {sh, sv},
		"empty":            {[]byte{}, []byte{}},
		"sh-truncated":     {sh[:len(sh)/2], sv},
		"sh-random":        {flipped(sh, 10), sv},
		"sv-flipped":       {sh, flipped(sv, -3)},
		"sv-missing":       {sh, []byte{}},
		"sh-version-3":     {flipped(sh, 2), sv}, // 2 ^ 1 = 3
		"suite-rc4":        hooked(func(sh *wire.ServerHello) { sh.Suite = SuiteRC4HMACSHA256 }),
		"kt-rsa":           hooked(func(sh *wire.ServerHello) { sh.KeyTransport = wire.KeyTransportRSAOAEP }),
		"key-garbled":      hooked(func(sh *wire.ServerHello) { sh.EncryptedKey[0] ^= 1 }),
		"kem-short":        hooked(func(sh *wire.ServerHello) { sh.KEMCiphertext = sh.KEMCiphertext[:1119] }),
		"kem-flipped":      hooked(func(sh *wire.ServerHello) { sh.KEMCiphertext[0] ^= 1 }),
		"board-cert-other": hooked(func(sh *wire.ServerHello) { sh.Certificate = p.students["p256"].leaf().Raw }),
		"status-garbage":   hooked(func(sh *wire.ServerHello) { sh.Status = []byte{1, 2, 3} }),
		"status-revoked":   withStatus(func(s *wire.BoardStatus) { s.Revoked = true }),
		"status-expired":   withStatus(func(s *wire.BoardStatus) { s.NextUpdate = uint64(fixedNow.Unix()) - 1 }),
		"status-old-crl":   withStatus(func(s *wire.BoardStatus) { s.CRLNumber = fuzzMinCRL - 1 }),
		"status-other":     withStatus(func(s *wire.BoardStatus) { s.CertSHA256[0] ^= 1 }),
		"error":            {mustMarshal(tb, &wire.Error{Code: wire.CodeUnknownCA, Text: "who are you"}), []byte{}},
	}
}

func openRecordSeeds(tb testing.TB) map[string][]any {
	return recordSeeds(tb, SuiteAES256CTRHMACSHA256)
}

// openGCMRecordSeeds are FuzzOpenGCMRecord's seeds: the same messages,
// sealed with aes-256-gcm.
func openGCMRecordSeeds(tb testing.TB) map[string][]any {
	seeds := recordSeeds(tb, SuiteAES256GCM)
	seeds["tag-only"] = []any{make([]byte, 1+gcmTagSize), false}
	seeds["short-of-tag"] = []any{make([]byte, gcmTagSize), false}
	return seeds
}

// recordSeeds are the seeds of a record decoder: messages, sealed with suite
// and as plaintext, and frames too short to be records.
func recordSeeds(tb testing.TB, suite uint16) map[string][]any {
	msgs := map[string][]byte{
		"fileheader": mustMarshal(tb, &wire.FileHeader{Name: "message.txt", Size: 290, SHA256: sha256.Sum256(lab(testSID))}),
		"data":       append([]byte{byte(wire.TypeData)}, lab(testSID)...),
		"submitend":  mustMarshal(tb, &wire.SubmitEnd{Signature: bytes.Repeat([]byte{0x30}, 70)}),
		"error":      mustMarshal(tb, &wire.Error{Code: wire.CodeBadRecordMAC, Text: "tampered"}),
		"fileoffset": mustMarshal(tb, &wire.FileOffset{Offset: 1 << 20}),
		"receipt": mustMarshal(tb, &wire.Receipt{ID: "x", SID: testSID, Serial: []byte{1}, Name: "message.txt", Size: 1,
			Received: 1, BoardCertSHA256: sha256.Sum256(pki(tb).board.leaf().Raw), Signature: []byte{1}}),
		"clienthello": clientHello(tb, nil),
		"unknown":     {0x99, 1, 2, 3},
	}
	seeds := map[string][]any{
		"empty":      {[]byte{}, false},
		"one-byte":   {[]byte{byte(wire.TypeData)}, false},
		"tag-only":   {make([]byte, 1+TagSize), false},
		"plain-err":  {msgs["error"], false},
		"empty-data": {[]byte{byte(wire.TypeData)}, true},
	}
	for name, m := range msgs {
		send, _ := recordPair(tb, suite)
		seeds["sealed-"+name] = []any{seal(tb, send, m), false}
		seeds["plain-"+name] = []any{m, true}
	}
	return seeds
}

// FuzzServerHandshake feeds arbitrary ClientHello payloads to the board. It
// must never panic; it accepts only a hello that decodes and passes every
// check, and answers every refusal with an Error of the refusal's code.
func FuzzServerHandshake(f *testing.F) {
	for _, seed := range sortedSeeds(serverHandshakeSeeds(f)) {
		f.Add(seed[0].([]byte))
	}
	sc := fuzzServerConfig(f)
	studentKey := pki(f).students["p256"].key.Public()
	f.Fuzz(func(t *testing.T, ch []byte) {
		sc.Replays = NewReplayCache(0) // every input is new to the board
		m := newMemConn(frame(ch))
		conn, err := Server(wire.NewConn(m, wire.Options{MaxFrame: boardMaxFrame}), sc)
		if err == nil {
			msg, uerr := wire.Unmarshal(ch)
			hello, ok := msg.(*wire.ClientHello)
			if uerr != nil || !ok || hello.Version != wire.ProtocolVersion || conn.PeerCertificate().Subject.CommonName != hello.SID {
				t.Fatalf("accepted a hello that should fail: %v", uerr)
			}
			if keys.Verify(studentKey, wire.HelloSignedBytes(wire.HelloPrefix(ch, hello)), hello.Signature) != nil {
				t.Fatalf("accepted a hello the student did not sign")
			}
			return
		}
		out := frames(t, m.out.Bytes())
		var ref *wire.Refusal
		if !errors.As(err, &ref) {
			var peer *wire.Error
			if errors.As(err, &peer) && len(out) == 0 {
				return // a student that refuses first is not answered
			}
			t.Fatalf("got %v, want a *wire.Refusal", err)
		}
		if len(out) != 1 {
			t.Fatalf("the board wrote %d frames before refusing, want only the Error", len(out))
		}
		em, uerr := wire.Unmarshal(out[0])
		if e, ok := em.(*wire.Error); uerr != nil || !ok || e.Code != ref.Code {
			t.Fatalf("refused with %v but answered %v (%v)", ref.Code, em, uerr)
		}
	})
}

// FuzzClientHandshake feeds arbitrary ServerHello and ServerVerify payloads to
// the student. It must never panic; it completes only with a flight the
// board's key signed, and answers every refusal with an Error of its code.
func FuzzClientHandshake(f *testing.F) {
	for _, seed := range sortedSeeds(clientHandshakeSeeds(f)) {
		f.Add(seed[0].([]byte), seed[1].([]byte))
	}
	cc := fuzzClientConfig(f)
	var ch []byte // the fuzz student's hello, made in the first run (fixRandom needs a *testing.T)
	boardKey := pki(f).board.key.Public()
	f.Fuzz(func(t *testing.T, sh, sv []byte) {
		if ch == nil {
			ch = clientHello(t, nil)
		}
		cc.Rand = detRand(1) // the same hello every time
		fixRandom(t)         // and the same signature
		m := newMemConn(append(frame(sh), frame(sv)...))
		_, err := Client(wire.NewConn(m, wire.Options{}), cc)
		out := frames(t, m.out.Bytes())
		if !bytes.Equal(out[0], ch) {
			t.Fatalf("the student's hello changed between runs")
		}
		if err == nil {
			pair := sha256.Sum256(append(frame(ch), frame(sh)...))
			svm, uerr := wire.Unmarshal(sv)
			v, ok := svm.(*wire.ServerVerify)
			if uerr != nil || !ok || keys.Verify(boardKey, signedMessage(contextServerVerify, pair[:]), v.Signature) != nil {
				t.Fatalf("completed a handshake the board did not sign")
			}
			return
		}
		var peer *wire.Error
		if errors.As(err, &peer) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "EOF") {
			return // the "board" refused, or its flight ended early (a truncated frame)
		}
		var ref *wire.Refusal
		if !errors.As(err, &ref) {
			t.Fatalf("got %v, want a *wire.Refusal", err)
		}
		if len(out) != 2 {
			t.Fatalf("the student wrote %d frames, want the hello and the Error", len(out))
		}
		em, uerr := wire.Unmarshal(out[1])
		if e, ok := em.(*wire.Error); uerr != nil || !ok || e.Code != ref.Code {
			t.Fatalf("refused with %v but answered %v (%v)", ref.Code, em, uerr)
		}
	})
}

// FuzzOpenRecord feeds arbitrary records to the record decoder with fixed
// keys. With seal false the input is a frame as received: unless its tag is
// right (checked here independently), the decoder must return no message,
// refuse with bad-record-mac and leave the frame untouched. With seal true the
// input is a message sealed with the right keys: the decoder must return it,
// or refuse it with malformed, unknown-message or unexpected-message — never
// bad-record-mac.
func FuzzOpenRecord(f *testing.F) {
	for _, seed := range sortedSeeds(openRecordSeeds(f)) {
		f.Add(seed[0].([]byte), seed[1].(bool))
	}
	var macKey [macKeyLen]byte
	for i := range macKey {
		macKey[i] = byte(0x80 + i) // as recordPair
	}
	f.Fuzz(func(t *testing.T, input []byte, sealIt bool) {
		send, recv := recordPair(t, SuiteAES256CTRHMACSHA256)
		rec := input
		if sealIt {
			if len(input) == 0 || len(input) > 1+wire.MaxDataChunk {
				return
			}
			rec = seal(t, send, input)
		}

		// The decoder alone.
		tagOK := false
		if len(rec) >= 1+TagSize {
			n := len(rec) - TagSize
			var hdr [13]byte
			hdr[8] = rec[0]
			binary.BigEndian.PutUint32(hdr[9:], uint32(n-1))
			mac := hmac.New(sha256.New, macKey[:])
			mac.Write(hdr[:])
			mac.Write(rec[1:n])
			tagOK = hmac.Equal(mac.Sum(nil), rec[n:])
		}
		buf := bytes.Clone(rec)
		plain, err := recv.openInPlace(buf)
		switch {
		case tagOK && (err != nil || !sealIt && len(plain) != len(rec)-TagSize):
			t.Fatalf("a record with a valid tag: %v", err)
		case !tagOK && (err == nil || plain != nil):
			t.Fatalf("a record with an invalid tag was opened")
		case !tagOK && !bytes.Equal(buf, rec):
			t.Fatalf("a record with an invalid tag was modified")
		case sealIt && !bytes.Equal(plain, input):
			t.Fatalf("opened %x, sealed %x", plain, input)
		}

		checkBoardRead(t, SuiteAES256CTRHMACSHA256, rec, tagOK)
	})
}

// checkBoardRead runs rec, whose tag is right or not as tagOK says, through
// the whole read path of a Conn of suite: the board's side with a fresh
// direction, which also takes a plaintext Error as the first frame. A record
// with a wrong tag must be that plaintext Error or refused bad-record-mac; a
// record with a right tag gives its message or is refused malformed,
// unknown-message or unexpected-message.
func checkBoardRead(t *testing.T, suite uint16, rec []byte, tagOK bool) {
	t.Helper()
	_, recv := recordPair(t, suite)
	s2cSend, _ := recordPair(t, suite)
	m := newMemConn(frame(rec))
	c := &Conn{conn: wire.NewConn(m, wire.Options{MaxFrame: boardMaxFrame}), in: recv, out: s2cSend, acceptPlainError: true}
	msg, err := c.ReadMessage()
	code, _, _ := codeOf(err)
	switch {
	case !tagOK && err == nil:
		if e, ok := msg.(*wire.Error); !ok || !bytes.Equal(mustMarshal(t, e), rec) {
			t.Fatalf("a record with an invalid tag gave %v", msg)
		}
	case !tagOK && code != wire.CodeBadRecordMAC:
		t.Fatalf("a record with an invalid tag gave %v, want bad-record-mac", err)
	case tagOK && err != nil && code != wire.CodeMalformed && code != wire.CodeUnknownMessage && code != wire.CodeUnexpectedMessage:
		t.Fatalf("a record with a valid tag gave %v", err)
	case err != nil && msg != nil:
		t.Fatalf("got both a message and %v", err)
	}
}

// sortedSeeds returns the seeds in the order of their names.
func sortedSeeds(seeds map[string][]any) [][]any {
	names := make([]string, 0, len(seeds))
	for n := range seeds {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([][]any, len(names))
	for i, n := range names {
		out[i] = seeds[n]
	}
	return out
}

// FuzzOpenGCMRecord is FuzzOpenRecord for aes-256-gcm: with seal false the
// input is a frame as received, and unless GCM (crypto/cipher, checked here
// independently) opens it, the decoder must return no message and refuse it
// with bad-record-mac; with seal true the decoder must return the message
// sealed, or refuse it with malformed, unknown-message or
// unexpected-message — never bad-record-mac.
func FuzzOpenGCMRecord(f *testing.F) {
	for _, seed := range sortedSeeds(openGCMRecordSeeds(f)) {
		f.Add(seed[0].([]byte), seed[1].(bool))
	}
	var key [keyLen]byte
	var iv [gcmNonceSize]byte
	for i := range key {
		key[i] = byte(i) // as recordPair
	}
	for i := range iv {
		iv[i] = byte(0x40 + i)
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		f.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input []byte, sealIt bool) {
		send, recv := recordPair(t, SuiteAES256GCM)
		rec := input
		if sealIt {
			if len(input) == 0 || len(input) > 1+wire.MaxDataChunk {
				return
			}
			rec = seal(t, send, input)
		}

		// The decoder alone, against GCM opened here at seq 0.
		tagOK := false
		if len(rec) >= 1+gcmTagSize {
			aad := binary.BigEndian.AppendUint32([]byte{rec[0]}, uint32(len(rec)-1-gcmTagSize))
			_, err := gcm.Open(nil, iv[:], rec[1:], aad)
			tagOK = err == nil
		}
		plain, err := recv.openInPlace(bytes.Clone(rec))
		switch {
		case tagOK && (err != nil || len(plain) != len(rec)-gcmTagSize):
			t.Fatalf("a record with a valid tag: %v", err)
		case !tagOK && (err == nil || plain != nil):
			t.Fatalf("a record with an invalid tag was opened")
		case !tagOK && recv.seq != 0:
			t.Fatalf("a record with an invalid tag moved the sequence number")
		case sealIt && !bytes.Equal(plain, input):
			t.Fatalf("opened %x, sealed %x", plain, input)
		}

		checkBoardRead(t, SuiteAES256GCM, rec, tagOK)
	})
}

// TestFuzzCorpus writes (with -update) or checks the committed seed corpora.
// The handshake seeds hold signatures and encryptions made with fresh
// randomness, so they are not compared byte for byte: instead the committed
// "valid" seeds must still complete a handshake, which shows that the
// deterministic fuzz student and PKI have not changed under them.
func TestFuzzCorpus(t *testing.T) {
	targets := map[string]map[string][]any{
		"FuzzServerHandshake": serverHandshakeSeeds(t),
		"FuzzClientHandshake": clientHandshakeSeeds(t),
		"FuzzOpenRecord":      openRecordSeeds(t),
		"FuzzOpenGCMRecord":   openGCMRecordSeeds(t),
	}
	const how = "run go test ./session -run TestFuzzCorpus -update"
	for target, seeds := range targets {
		if *update {
			if err := fuzzseed.Write(target, seeds); err != nil {
				t.Fatal(err)
			}
		}
		fuzzseed.Check(t, target, seeds, target == "FuzzOpenRecord" || target == "FuzzOpenGCMRecord", how)
		path := filepath.Join(fuzzseed.Dir(target), "valid")
		got, err := fuzzseed.Read(path)
		if err != nil {
			continue // FuzzOpenRecord has no "valid" seed; a missing file is reported above
		}
		switch target {
		case "FuzzServerHandshake":
			fixRandom(t)
			m := newMemConn(frame(got[0].([]byte)))
			if _, err := Server(wire.NewConn(m, wire.Options{MaxFrame: boardMaxFrame}), fuzzServerConfig(t)); err != nil {
				t.Errorf("%s no longer completes a handshake (%v): %s", path, err, how)
			}
		case "FuzzClientHandshake":
			fixRandom(t)
			m := newMemConn(append(frame(got[0].([]byte)), frame(got[1].([]byte))...))
			if _, err := Client(wire.NewConn(m, wire.Options{}), fuzzClientConfig(t)); err != nil {
				t.Errorf("%s no longer completes a handshake (%v): %s", path, err, how)
			}
		}
	}
}
