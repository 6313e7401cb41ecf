package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"testing"
)

// TestSignVerify checks the signature schemes of PROTOCOL.md §5.1, each
// against the standard library's own verification of the scheme.
func TestSignVerify(t *testing.T) {
	signers := map[string]crypto.Signer{}
	for kt, alg := range map[string]string{"p256": "ecdsa-p256", "p384": "ecdsa-p384", "rsa2048": "rsa-2048", "other": "ecdsa-p256"} {
		k, err := Generate(alg)
		if err != nil {
			t.Fatal(err)
		}
		signers[kt] = k
	}
	msg := append([]byte("pkiboard test context\x00"), bytes.Repeat([]byte{7}, 32)...)
	for _, kt := range []string{"p256", "p384", "rsa2048"} {
		t.Run(kt, func(t *testing.T) {
			key := signers[kt]
			sig, err := Sign(key, rand.Reader, msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(key.Public(), msg, sig); err != nil {
				t.Errorf("Verify: %v", err)
			}
			// The scheme, checked independently.
			switch k := key.Public().(type) {
			case *ecdsa.PublicKey:
				var digest []byte
				if kt == "p384" {
					d := sha512.Sum384(msg)
					digest = d[:]
				} else {
					d := sha256.Sum256(msg)
					digest = d[:]
				}
				if !ecdsa.VerifyASN1(k, digest, sig) {
					t.Errorf("not an ECDSA signature over the message's %s digest", map[bool]string{true: "SHA-384", false: "SHA-256"}[kt == "p384"])
				}
			case *rsa.PublicKey:
				d := sha256.Sum256(msg)
				if err := rsa.VerifyPSS(k, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
					t.Errorf("not an RSA-PSS SHA-256 signature with a 32-byte salt: %v", err)
				}
				other, _ := rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: 20})
				if err := Verify(k, msg, other); !errors.Is(err, ErrBadSignature) {
					t.Errorf("a PSS signature with a 20-byte salt: got %v, want ErrBadSignature", err)
				}
			}
			changed := bytes.Clone(msg)
			changed[len(changed)-1] ^= 1
			if err := Verify(key.Public(), changed, sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("another message: got %v, want ErrBadSignature", err)
			}
			if err := Verify(signers["other"].Public(), msg, sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("another key: got %v, want ErrBadSignature", err)
			}
		})
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed := crypto.Signer(edPriv)
	if _, err := Sign(ed, nil, msg); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("Sign with Ed25519: got %v, want ErrUnsupportedKey", err)
	}
	if err := Verify(ed.Public(), msg, []byte{1}); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("Verify with Ed25519: got %v, want ErrUnsupportedKey", err)
	}
}
