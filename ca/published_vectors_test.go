package ca

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"pkiboard/internal/vectors"
)

// TestPublishedEd25519 checks the token key's Ed25519 — a key made from its
// 32-byte seed (tokenKeyFromSecret), signing a binding as Client.Request
// does — against RFC 8032's TEST 1 to TEST 3, copied into testdata/vectors.
func TestPublishedEd25519(t *testing.T) {
	var f struct {
		Source string
		Cases  []struct {
			Case      string
			SecretKey vectors.Hex `json:"secret_key"`
			PublicKey vectors.Hex `json:"public_key"`
			Message   vectors.Hex `json:"message"`
			Signature vectors.Hex `json:"signature"`
		}
	}
	vectors.Load(t, "rfc8032-ed25519.json", &f)
	if len(f.Cases) != 3 {
		t.Fatalf("%d cases, want 3", len(f.Cases))
	}
	for _, c := range f.Cases {
		key := ed25519.NewKeyFromSeed(c.SecretKey)
		if pub := key.Public().(ed25519.PublicKey); !bytes.Equal(pub, c.PublicKey) {
			t.Errorf("%s: public key %x, want %x", c.Case, pub, c.PublicKey)
		}
		if sig := ed25519.Sign(key, c.Message); !bytes.Equal(sig, c.Signature) {
			t.Errorf("%s: signature %x, want %x", c.Case, sig, c.Signature)
		}
		if !ed25519.Verify(ed25519.PublicKey(c.PublicKey), c.Message, c.Signature) {
			t.Errorf("%s: the signature does not verify", c.Case)
		}
	}
}
