package adversary

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"

	"go.uber.org/zap"
)

// guess is a candidate value for a secret, and where the adversary got it.
type guess struct {
	from  string
	value []byte
}

// keyView is what a guess is checked against: the public inputs of the key
// schedule and the student's first record, whose tag only the right keys
// reproduce.
type keyView struct {
	clientRandom, serverRandom [32]byte
	th                         [32]byte
	firstRecord                []byte
}

// searchKeys tries every session-key guess with every pq-secret guess as the
// key schedule's IKM (session_key || pq_secret), and every session-key guess
// alone (as if the X-Wing secret were not mixed in), and checks the c2s MAC
// key each gives against the tag of the student's first record. It returns
// how many IKMs it tried and the first that verified, if any.
func searchKeys(v keyView, sessionKeys, pqSecrets []guess) (tried int, found string) {
	try := func(ikm []byte) bool {
		tried++
		k, err := deriveKeys(ikm, v.clientRandom, v.serverRandom, v.th, "c2s")
		return err == nil && tagVerifies(k.mac, 0, v.firstRecord)
	}
	for _, sk := range sessionKeys {
		if try(sk.value) {
			return tried, sk.from + " alone"
		}
		for _, pq := range pqSecrets {
			if try(append(append([]byte(nil), sk.value...), pq.value...)) {
				return tried, sk.from + " with " + pq.from
			}
		}
	}
	return tried, ""
}

// stealSessionKey runs after a relayed session: from everything it saw, the
// adversary tries to get the record keys. The session key travels only
// encrypted to the student's certificate key, and the pq secret only
// encapsulated to the student's one-time X-Wing key; every other value on the
// wire is public and independent of both. So it guesses: every public value
// and its hash, the original course project's constant key, the encrypted
// key opened with the keys it holds — and checks each against the MAC of the
// student's first record.
func (s *conn) stealSessionKey() {
	nb := &s.nb
	if nb.hello == nil || nb.serverHello == nil || nb.svPayload == nil || nb.firstRecord == nil {
		s.say("the session ended before the student's first record: there is nothing to check a key against")
		return
	}
	ch, sh := nb.hello, nb.serverHello
	helloHash := hashFrames(nb.helloSent)
	helloPair := hashFrames(nb.helloSent, nb.shPayload)
	th := hashFrames(nb.helloSent, nb.shPayload, nb.svPayload)
	s.say("in the clear, and so known to the adversary: the SID, both certificates, both randoms, the suites, the encrypted session key, the X-Wing public key and ciphertext, the signature, and every record's type and size",
		zap.String("sid", ch.SID), zap.Int("encrypted_key_bytes", len(sh.EncryptedKey)), zap.Int("kem_ciphertext_bytes", len(sh.KEMCiphertext)))

	public := []guess{
		{"the client random", ch.Random[:]},
		{"the board's random", sh.Random[:]},
		{"H_hello", helloHash[:]},
		{"SHA-256(ClientHello || ServerHello)", helloPair[:]},
		{"the transcript hash TH", th[:]},
		{"the SID", []byte(ch.SID)},
		{"encrypted_key", sh.EncryptedKey},
		{"kem_ciphertext", sh.KEMCiphertext},
		{"kem_public", ch.KEMPublic},
		{"the ServerVerify signature", nb.svPayload},
		{"the student's first record", nb.firstRecord},
	}
	public = append(public,
		guess{"the student certificate", ch.Certificate},
		guess{"the hello's signature", ch.Signature},
		guess{"the board certificate", sh.Certificate},
		guess{"the board's status", sh.Status})
	// Every public value as a 32-byte key: itself (first 32 bytes, zero
	// padded) and its SHA-256.
	var derived []guess
	for _, g := range public {
		k := make([]byte, 32)
		copy(k, g.value)
		h := sha256.Sum256(g.value)
		derived = append(derived, guess{g.from, k}, guess{"SHA-256 of " + g.from, h[:]})
	}
	regina := make([]byte, 32)
	copy(regina, "regina")
	reginaHash := sha256.Sum256([]byte("regina"))
	derived = append(derived,
		guess{"the zero key", make([]byte, 32)},
		guess{`"regina" (the original project's constant key)`, regina},
		guess{`SHA-256("regina")`, reginaHash[:]})

	sessionKeys := append([]guess(nil), derived...)
	for _, k := range s.keysToTry(ch.Certificate) {
		key, err := openSessionKey(k.key, helloHash, sh.EncryptedKey)
		if err != nil {
			s.act("tried to decrypt the session key (encrypted_key) with %s: it failed", k.name)
			s.say("the decryption error", zap.Error(err))
			continue
		}
		s.act("decrypted the session key with %s", k.name)
		sessionKeys = append(sessionKeys, guess{"encrypted_key opened with " + k.name, key})
	}

	pqSecrets := append([]guess(nil), derived...)
	if fresh, err := xwing.GenerateKey(); err == nil {
		if pq, err := decapsulatePQ(fresh, sh.KEMCiphertext, helloHash); err == nil {
			s.act("decapsulated kem_ciphertext with a fresh X-Wing key of its own (a wrong key gives a wrong secret, silently)")
			pqSecrets = append(pqSecrets, guess{"kem_ciphertext decapsulated with a fresh X-Wing key", pq})
		}
	}

	tried, found := searchKeys(keyView{clientRandom: ch.Random, serverRandom: sh.Random, th: th, firstRecord: nb.firstRecord}, sessionKeys, pqSecrets)
	s.rep.KeyCandidates = tried
	if found != "" {
		s.rep.KeysRecovered = true
		s.act("RECOVERED the record keys: %s verifies the MAC of the student's first record", found)
		return
	}
	s.act("tried %d candidate keys (%d session-key guesses, each with %d pq-secret guesses and alone) against the MAC of the student's first record: none verified",
		tried, len(sessionKeys), len(pqSecrets))
}

// namedKey is a private key the adversary can try, and how to call it.
type namedKey struct {
	name string
	key  crypto.Signer
}

// keysToTry returns the private keys the adversary holds: its own (mallory's,
// when it has one) and a fresh key of the same type as the student's
// certificate key.
func (s *conn) keysToTry(studentCert []byte) []namedKey {
	var out []namedKey
	if s.a.cfg.Key != nil {
		out = append(out, namedKey{"its own private key (" + s.a.cfg.Chain[0].Subject.CommonName + "'s, a student of the same CA)", s.a.cfg.Key})
	}
	if len(studentCert) > 0 {
		if c, err := x509.ParseCertificate(studentCert); err == nil {
			var k crypto.Signer
			var err error
			switch pub := c.PublicKey.(type) {
			case *ecdsa.PublicKey:
				k, err = ecdsa.GenerateKey(pub.Curve, rand.Reader)
			case *rsa.PublicKey:
				k, err = rsa.GenerateKey(rand.Reader, pub.N.BitLen())
			}
			if err == nil && k != nil {
				out = append(out, namedKey{"a fresh key of the student's key type", k})
			}
		}
	}
	return out
}
