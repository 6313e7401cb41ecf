package session

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"

	"pkiboard/wire"
)

// TestKeyTransportFor checks the key transport each certificate key gets, and
// the sentence the unsupported-key refusal carries for every other key.
func TestKeyTransportFor(t *testing.T) {
	rsaBits := func(n int) *rsa.PublicKey {
		return &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), uint(n-1)), E: 65537}
	}
	ecKey := func(c elliptic.Curve) crypto.PublicKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pub     crypto.PublicKey
		want    uint8
		wantErr string
	}{
		{"RSA-2048", rsaBits(2048), wire.KeyTransportRSAOAEP, ""},
		{"RSA-8192", rsaBits(8192), wire.KeyTransportRSAOAEP, ""},
		{"P-256", ecKey(elliptic.P256()), wire.KeyTransportHPKEP256, ""},
		{"P-384", ecKey(elliptic.P384()), wire.KeyTransportHPKEP384, ""},
		{"RSA-2047", rsaBits(2047), 0, "an RSA key of 2047 bits (RSA keys must have 2048 to 8192 bits)"},
		{"RSA-8193", rsaBits(8193), 0, "an RSA key of 8193 bits (RSA keys must have 2048 to 8192 bits)"},
		{"P-521", ecKey(elliptic.P521()), 0, "an ECDSA key on P-521 (only P-256 and P-384 are accepted)"},
		{"Ed25519", ed25519Key().Public(), 0, "a Ed25519 key (only RSA and ECDSA P-256 or P-384 are accepted)"},
		{"X25519", x25519.PublicKey(), 0, "a ECDH key (only RSA and ECDSA P-256 or P-384 are accepted)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := keyTransportFor(tt.pub)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("got %d, %v want the error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %d, %v want %d", got, err, tt.want)
			}
		})
	}
}

// TestClientConfigECDHKey checks that the config converts its Key to an ECDH
// key once and again whenever Key is replaced, never handing out the ECDH key
// of a Key it no longer has.
func TestClientConfigECDHKey(t *testing.T) {
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	first, second := newKey(), newKey()
	cfg := &ClientConfig{Key: first}
	steps := []struct {
		name string
		key  *ecdsa.PrivateKey // set as cfg.Key before the step
		same bool              // the ECDH key is the one of the step before
	}{
		{"first conversion", first, false},
		{"same key, remembered", first, true},
		{"key replaced", second, false},
		{"replaced key, remembered", second, true},
		{"first key back", first, false},
	}
	var last *ecdh.PrivateKey
	for _, st := range steps {
		cfg.Key = st.key
		got, err := cfg.ecdhKey()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		want, err := st.key.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(want) {
			t.Errorf("%s: the ECDH key is not the one of Key", st.name)
		}
		if (got == last) != st.same {
			t.Errorf("%s: same ECDH key as before = %v, want %v", st.name, got == last, st.same)
		}
		last = got
	}
}
