package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"slices"
	"strings"
	"testing"

	"pkiboard/wire"
)

// TestStepCAToken checks the one-time token the bench makes for step-ca as
// `step ca token` makes it: a compact JWS whose header names ES256 and the
// provisioner key's kid, whose signature (r||s, RFC 7518 §3.4) verifies with
// that key, and whose claims are those step-ca's JWK provisioner checks.
func TestStepCAToken(t *testing.T) {
	s := &stepCA{addr: "127.0.0.1:9443", rootFP: strings.Repeat("ab", 32), key: newP256()}
	_, s.kid = publicJWK(&s.key.PublicKey)
	tok, err := s.token("bench-00-7")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("got %d parts, want 3", len(parts))
	}
	b64 := base64.RawURLEncoding
	var header map[string]string
	var claims map[string]any
	for i, v := range []any{&header, &claims} {
		data, err := b64.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	if header["alg"] != "ES256" || header["kid"] != s.kid || header["typ"] != "JWT" {
		t.Errorf("header: got %v", header)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %d bytes, %v; want 64", len(sig), err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&s.key.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("the signature does not verify with the provisioner's key")
	}
	for k, want := range map[string]any{
		"iss": stepCAProvisioner, "aud": "https://127.0.0.1:9443/1.0/sign", "sub": "bench-00-7", "sha": s.rootFP,
	} {
		if claims[k] != want {
			t.Errorf("claim %s: got %v want %v", k, claims[k], want)
		}
	}
	if sans, _ := claims["sans"].([]any); !slices.Equal(sans, []any{"bench-00-7"}) {
		t.Errorf("claim sans: got %v", claims["sans"])
	}
	if jti, _ := claims["jti"].(string); len(jti) != 64 {
		t.Errorf("claim jti: got %q, want 32 random bytes in hex", jti)
	}
	nbf, _ := claims["nbf"].(float64)
	exp, _ := claims["exp"].(float64)
	if !(exp > nbf) {
		t.Errorf("claims nbf %v, exp %v: want nbf < exp", nbf, exp)
	}
	// Another token for the same SID is another jti: step-ca refuses a reused one.
	tok2, _ := s.token("bench-00-7")
	if tok2 == tok {
		t.Error("two tokens are the same")
	}
}

// TestPublicJWK checks the kid against a thumbprint computed independently
// from the key's members (RFC 7638 §3: the required members in
// lexicographic order, no whitespace).
func TestPublicJWK(t *testing.T) {
	key := newP256()
	jwk, kid := publicJWK(&key.PublicKey)
	if jwk["kty"] != "EC" || jwk["crv"] != "P-256" || jwk["kid"] != kid {
		t.Fatalf("jwk: got %v", jwk)
	}
	x, y := key.PublicKey.X.FillBytes(make([]byte, 32)), key.PublicKey.Y.FillBytes(make([]byte, 32))
	members, _ := json.Marshal(struct {
		Crv string `json:"crv"`
		Kty string `json:"kty"`
		X   string `json:"x"`
		Y   string `json:"y"`
	}{"P-256", "EC", base64.RawURLEncoding.EncodeToString(x), base64.RawURLEncoding.EncodeToString(y)})
	sum := sha256.Sum256(members)
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); kid != want {
		t.Fatalf("kid: got %s want %s", kid, want)
	}
}

// TestNullCAAnswer checks that the null CA's answer is a well-formed
// EnrollAccepted of this protocol version: it encodes and decodes back.
func TestNullCAAnswer(t *testing.T) {
	der := bytes.Repeat([]byte{0x30}, 600)
	payload, err := wire.Marshal(nullCAAnswer(der))
	if err != nil {
		t.Fatalf("the null CA's answer does not encode: %v", err)
	}
	m, err := wire.Unmarshal(payload)
	if err != nil {
		t.Fatalf("the null CA's answer does not decode: %v", err)
	}
	if acc, ok := m.(*wire.EnrollAccepted); !ok || !bytes.Equal(acc.Root, der) {
		t.Errorf("decoded %T %+v, want the EnrollAccepted with the root", m, m)
	}
}
