package session

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"pkiboard/rc4"
	"pkiboard/wire"
)

// decryptor is an eavesdropper that knows the protocol (it implements §5.1 to
// §5.3 from PROTOCOL.md, independently of the package's code) and has
// recorded every byte of a session. It is given long-term private keys, and
// possibly the ephemeral X-Wing key, and tries to read the student's records.
type decryptor struct {
	ch, sh, sv    []byte // the handshake frame payloads
	records       [][]byte
	hello         *wire.ClientHello
	serverHello   *wire.ServerHello
	helloHash, th [32]byte
	studentKey    crypto.Signer
	boardKey      crypto.Signer
	ephemeral     hpke.PrivateKey // nil: the decryptor lacks it
}

func newDecryptor(t *testing.T, c2sFrames, s2cFrames [][]byte) *decryptor {
	t.Helper()
	d := &decryptor{ch: c2sFrames[0], sh: s2cFrames[0], sv: s2cFrames[1], records: c2sFrames[1:]}
	m, err := wire.Unmarshal(d.ch)
	if err != nil {
		t.Fatal(err)
	}
	d.hello = m.(*wire.ClientHello)
	if m, err = wire.Unmarshal(d.sh); err != nil {
		t.Fatal(err)
	}
	d.serverHello = m.(*wire.ServerHello)
	d.helloHash = sha256.Sum256(frame(d.ch))
	d.th = sha256.Sum256(bytes.Join([][]byte{frame(d.ch), frame(d.sh), frame(d.sv)}, nil))
	return d
}

// sessionKey recovers the session key from encrypted_key with the student's
// long-term key, as anyone holding it can.
func (d *decryptor) sessionKey(t *testing.T) []byte {
	t.Helper()
	label := append([]byte("pkiboard v2 session key"), d.helloHash[:]...)
	var key []byte
	var err error
	switch k := d.studentKey.(type) {
	case *rsa.PrivateKey:
		key, err = rsa.DecryptOAEP(sha256.New(), nil, k, d.serverHello.EncryptedKey, label)
	case *ecdsa.PrivateKey:
		ek, _ := k.ECDH()
		sk, _ := hpke.NewDHKEMPrivateKey(ek)
		key, err = hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), label, d.serverHello.EncryptedKey)
	}
	if err != nil || len(key) != 32 {
		t.Fatalf("the decryptor could not recover the session key: %v", err)
	}
	return key
}

// pqSecret recovers the pq secret, which takes the ephemeral X-Wing key.
func (d *decryptor) pqSecret(t *testing.T) []byte {
	t.Helper()
	r, err := hpke.NewRecipient(d.serverHello.KEMCiphertext, d.ephemeral, hpke.HKDFSHA256(), hpke.ExportOnly(),
		append([]byte("pkiboard v2 pq"), d.helloHash[:]...))
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Export("pkiboard v2 pq secret", 32)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// c2sKeys runs the key schedule of §5.2 with the given IKM.
func (d *decryptor) c2sKeys(t *testing.T, ikm []byte) (key, mac, iv []byte) {
	t.Helper()
	salt := append(d.hello.Random[:], d.serverHello.Random[:]...)
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		t.Fatal(err)
	}
	expand := func(label string, n int) []byte {
		out, err := hkdf.Expand(sha256.New, prk, label+string(d.th[:]), n)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return expand("pkiboard v2 c2s key", 32), expand("pkiboard v2 c2s mac", 32), expand("pkiboard v2 c2s iv", 16)
}

// stream returns the c2s keystream of the suite the board chose.
func (d *decryptor) stream(t *testing.T, key, iv []byte) cipher.Stream {
	t.Helper()
	if d.serverHello.Suite == SuiteRC4HMACSHA256 {
		c, err := rc4.NewCipherDrop(key, 1536)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return cipher.NewCTR(block, iv)
}

// readFirstRecord tries keys on the first c2s record (the FileHeader): it
// reports whether the tag verifies, and the plaintext the keys give.
func (d *decryptor) readFirstRecord(t *testing.T, key, macKey, iv []byte) (tagOK bool, plaintext []byte) {
	rec := d.records[0]
	n := len(rec) - TagSize
	var hdr [13]byte
	binary.BigEndian.PutUint64(hdr[:8], 0)
	hdr[8] = rec[0]
	binary.BigEndian.PutUint32(hdr[9:], uint32(n-1))
	m := hmac.New(sha256.New, macKey)
	m.Write(hdr[:])
	m.Write(rec[1:n])
	tagOK = hmac.Equal(m.Sum(nil), rec[n:])
	plaintext = make([]byte, n-1)
	d.stream(t, key, iv).XORKeyStream(plaintext, rec[1:n])
	return tagOK, plaintext
}

// TestForwardSecrecy records a session, then gives a decryptor both long-term
// private keys (more than an adversary who later steals the student's key):
// it recovers the session key but not the pq secret, and no way of deriving
// the record keys without it verifies the first record or reveals its
// plaintext. With the ephemeral X-Wing key as well, the same decryptor reads
// the records: the control that shows the attempt was a fair one, and that the
// test would fail if the pq secret were not mixed into the keys.
func TestForwardSecrecy(t *testing.T) {
	p := pki(t)
	for _, tc := range []struct {
		kt    string
		suite uint16
	}{{"p256", SuiteAES256CTRHMACSHA256}, {"p384", SuiteRC4HMACSHA256}, {"rsa2048", SuiteAES256CTRHMACSHA256}} {
		kt := tc.kt
		t.Run(kt+"/"+SuiteName(tc.suite), func(t *testing.T) {
			var ephemeral hpke.PrivateKey
			cc := p.clientConfig(kt)
			cc.Suites = []uint16{tc.suite}
			sc := p.serverConfig()
			sc.AllowRC4 = true
			cc.testHookKEMKey = func() (hpke.PrivateKey, error) {
				k, err := hpke.MLKEM768X25519().GenerateKey()
				ephemeral = k
				return k, err
			}
			const name = "secret-report.pdf"
			content := []byte("the answer to question 3 is 42\n")
			var px *proxy
			r := runSession(t, scenario{server: sc, client: cc, name: name, content: content,
				tamper: func(_ direction, _ int, f []byte) [][]byte { return [][]byte{f} }, proxy: &px})
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("board: %v; student: %v", r.serverErr, r.clientErr)
			}

			d := newDecryptor(t, px.frames(t, c2s), px.frames(t, s2c))
			d.studentKey, d.boardKey = p.students[kt].key, p.board.key
			if !bytes.Equal(d.th[:], func() []byte { th := r.student.TranscriptHash(); return th[:] }()) {
				t.Fatal("the decryptor's transcript hash differs from the session's: it does not implement the protocol")
			}
			sessionKey := d.sessionKey(t)
			secret := []byte(name) // in the FileHeader's plaintext

			// Without the ephemeral key: every guess of the pq secret, and
			// every other input the decryptor has.
			guesses := map[string][]byte{
				"session key alone":           sessionKey,
				"zero pq secret":              append(bytes.Clone(sessionKey), make([]byte, 32)...),
				"kem_ciphertext as pq secret": append(bytes.Clone(sessionKey), d.serverHello.KEMCiphertext[:32]...),
				"kem_public as pq secret":     append(bytes.Clone(sessionKey), d.hello.KEMPublic[:32]...),
				"hash of the transcript":      append(bytes.Clone(sessionKey), d.th[:]...),
				"board key as pq secret":      append(bytes.Clone(sessionKey), p.board.key.(*ecdsa.PrivateKey).D.Bytes()...),
			}
			// Decapsulating with another X-Wing key: ML-KEM's implicit
			// rejection gives a secret, just the wrong one.
			wrong, _ := hpke.MLKEM768X25519().GenerateKey()
			d.ephemeral = wrong
			guesses["another X-Wing key"] = append(bytes.Clone(sessionKey), d.pqSecret(t)...)
			for what, ikm := range guesses {
				key, mac, iv := d.c2sKeys(t, ikm)
				tagOK, plain := d.readFirstRecord(t, key, mac, iv)
				if tagOK {
					t.Errorf("%s: the first record's tag verifies", what)
				}
				if bytes.Contains(plain, secret) {
					t.Errorf("%s: the plaintext is revealed", what)
				}
			}

			// The control: with the ephemeral key the decryptor reads it all.
			d.ephemeral = ephemeral
			key, mac, iv := d.c2sKeys(t, append(bytes.Clone(sessionKey), d.pqSecret(t)...))
			tagOK, plain := d.readFirstRecord(t, key, mac, iv)
			if !tagOK || !bytes.Contains(plain, secret) {
				t.Fatalf("with the ephemeral key: tag verifies %v, plaintext %q: the decryptor does not implement the protocol", tagOK, plain)
			}
			stream := d.stream(t, key, iv)
			var got []byte
			for _, rec := range d.records {
				body := bytes.Clone(rec[1 : len(rec)-TagSize])
				stream.XORKeyStream(body, body)
				if wire.Type(rec[0]) == wire.TypeData {
					got = append(got, body...)
				}
			}
			if !bytes.Equal(got, content) {
				t.Errorf("the control decrypted %q, want %q", got, content)
			}
		})
	}
}

// TestWireSizes checks the sizes PROTOCOL.md §5.1 gives for the key transport
// and the X-Wing exchange.
func TestWireSizes(t *testing.T) {
	p := pki(t)
	var h [32]byte
	key := make([]byte, 32)
	for kt, want := range map[string]int{"p256": 65 + 48, "p384": 97 + 48, "rsa2048": 256} {
		pub := p.keys[kt].Public()
		tr, err := keyTransportFor(pub)
		if err != nil {
			t.Fatal(err)
		}
		ek, err := sealSessionKey(rand.Reader, pub, tr, h, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(ek) != want {
			t.Errorf("%s: encrypted_key of %d bytes, want %d", kt, len(ek), want)
		}
	}
	sk, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sk.PublicKey().Bytes()); n != 1216 {
		t.Errorf("kem_public of %d bytes, want 1216", n)
	}
	enc, secret, err := encapsulatePQ(sk.PublicKey(), h)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != 1120 || len(secret) != 32 {
		t.Errorf("kem_ciphertext of %d bytes and pq secret of %d, want 1120 and 32", len(enc), len(secret))
	}
	got, err := decapsulatePQ(sk, enc, h)
	if err != nil || !bytes.Equal(got, secret) {
		t.Errorf("decapsulation gave another secret (%v)", err)
	}
	if hpke.MLKEM768X25519().ID() != wire.KEMXWing {
		t.Errorf("X-Wing's HPKE id is 0x%04x, not 0x%04x", hpke.MLKEM768X25519().ID(), wire.KEMXWing)
	}
}
