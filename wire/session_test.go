package wire

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// largestHello is a ClientHello with every field at its maximum.
func largestHello() *ClientHello {
	return &ClientHello{
		Version:     ProtocolVersion,
		SID:         string(bytes.Repeat([]byte{'s'}, MaxSIDLen)),
		Certificate: make([]byte, MaxCertLen),
		Time:        1 << 63,
		Suites:      make([]uint16, MaxSuites),
		KEM:         KEMXWing,
		KEMPublic:   make([]byte, MaxKeyShareLen),
		Signature:   make([]byte, MaxSignatureLen),
	}
}

// TestClientHelloLimits checks MaxFirstFrameBoard (PROTOCOL.md §1: 13 461
// bytes) against the largest hello, and that one byte more in any field is
// refused.
func TestClientHelloLimits(t *testing.T) {
	if MaxFirstFrameBoard != 13461 {
		t.Errorf("MaxFirstFrameBoard = %d, PROTOCOL.md §1 says 13 461", MaxFirstFrameBoard)
	}
	p, err := Marshal(largestHello())
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != MaxFirstFrameBoard {
		t.Errorf("the largest hello is %d bytes, MaxFirstFrameBoard %d", len(p), MaxFirstFrameBoard)
	}
	if _, err := Unmarshal(p); err != nil {
		t.Errorf("the largest hello does not decode: %v", err)
	}
	for name, grow := range map[string]func(*ClientHello){
		"sid":         func(h *ClientHello) { h.SID += "s" },
		"certificate": func(h *ClientHello) { h.Certificate = append(h.Certificate, 0) },
		"suites":      func(h *ClientHello) { h.Suites = append(h.Suites, 0) },
		"kem_public":  func(h *ClientHello) { h.KEMPublic = append(h.KEMPublic, 0) },
		"signature":   func(h *ClientHello) { h.Signature = append(h.Signature, 0) },
	} {
		h := largestHello()
		grow(h)
		p, err := Marshal(h)
		if err != nil {
			continue // a string8 that cannot hold it: refused already
		}
		if _, err := Unmarshal(p); !isRefusal(err, CodeMalformed) {
			t.Errorf("%s one byte over its limit: got %v, want malformed", name, err)
		}
	}
	for name, shrink := range map[string]func(*ClientHello){
		"certificate": func(h *ClientHello) { h.Certificate = nil },
		"signature":   func(h *ClientHello) { h.Signature = nil },
	} {
		h := largestHello()
		shrink(h)
		p, _ := Marshal(h)
		if _, err := Unmarshal(p); !isRefusal(err, CodeMalformed) {
			t.Errorf("empty %s: got %v, want malformed", name, err)
		}
	}
}

// TestHelloSignedPrefix checks that the signed part of a hello is its payload
// up to and including kem_public, whether computed from the message
// (SignedPrefix, as the student does) or cut from the received bytes
// (HelloPrefix, as the board does), and that the signed bytes are the context
// string, a zero byte and the prefix's SHA-256.
func TestHelloSignedPrefix(t *testing.T) {
	var h *ClientHello
	for _, m := range sampleMessages() {
		if ch, ok := m.(*ClientHello); ok {
			h = ch
		}
	}
	p, err := Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := h.SignedPrefix()
	if err != nil {
		t.Fatal(err)
	}
	want := p[:len(p)-2-len(h.Signature)]
	if !bytes.Equal(prefix, want) {
		t.Errorf("SignedPrefix:\n got %x\nwant %x", prefix, want)
	}
	back, err := Expect[*ClientHello](Unmarshal(p))
	if err != nil {
		t.Fatal(err)
	}
	if got := HelloPrefix(p, back); !bytes.Equal(got, want) {
		t.Errorf("HelloPrefix:\n got %x\nwant %x", got, want)
	}
	sum := sha256.Sum256(want)
	if got := HelloSignedBytes(prefix); !bytes.Equal(got, append([]byte("pkiboard v2 client hello\x00"), sum[:]...)) {
		t.Errorf("HelloSignedBytes = %x", got)
	}
}
