package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestEnrollRequestLimits checks the decode limits of PROTOCOL.md §4.2: the
// lengths of the SID and the CSR, and the presence and length of token_key,
// certificate and signature as auth requires them.
func TestEnrollRequestLimits(t *testing.T) {
	key := bytes.Repeat([]byte{1}, TokenKeyLen)
	edSig := bytes.Repeat([]byte{2}, TokenSignatureLen)
	cert := []byte("certificate der")
	base := func(auth uint8) *EnrollRequest {
		return &EnrollRequest{Version: ProtocolVersion, Profile: ProfileStudent, SID: "1155000001", CSR: []byte("csr"), Auth: auth}
	}
	with := func(auth uint8, f func(*EnrollRequest)) *EnrollRequest {
		m := base(auth)
		f(m)
		return m
	}
	for _, tc := range []struct {
		name string
		m    *EnrollRequest
		ok   bool
		text string // a substring of the refusal
	}{
		{"auth 0", base(AuthNone), true, ""},
		{"auth 1", with(AuthToken, func(m *EnrollRequest) { m.TokenKey, m.Signature = key, edSig }), true, ""},
		{"auth 2", with(AuthRenewal, func(m *EnrollRequest) { m.Certificate, m.Signature = cert, []byte("sig") }), true, ""},
		{"auth 2 longest", with(AuthRenewal, func(m *EnrollRequest) {
			m.Certificate, m.Signature = make([]byte, MaxCertLen), make([]byte, MaxSignatureLen)
		}), true, ""},
		{"auth 3", base(3), false, "auth 3 is not"},
		{"auth 255", base(255), false, "auth 255 is not"},
		{"auth 0 with a token key", with(AuthNone, func(m *EnrollRequest) { m.TokenKey = key }), false, "token_key with auth 0"},
		{"auth 0 with a certificate", with(AuthNone, func(m *EnrollRequest) { m.Certificate = cert }), false, "certificate with auth 0"},
		{"auth 0 with a signature", with(AuthNone, func(m *EnrollRequest) { m.Signature = edSig }), false, "signature with auth 0"},
		{"auth 1 without a key", with(AuthToken, func(m *EnrollRequest) { m.Signature = edSig }), false, "token_key with auth 1 of 0 bytes"},
		{"auth 1 short key", with(AuthToken, func(m *EnrollRequest) { m.TokenKey, m.Signature = key[:31], edSig }), false, "token_key"},
		{"auth 1 long key", with(AuthToken, func(m *EnrollRequest) { m.TokenKey, m.Signature = append(key, 0), edSig }), false, "token_key"},
		{"auth 1 short signature", with(AuthToken, func(m *EnrollRequest) { m.TokenKey, m.Signature = key, edSig[:63] }), false, "signature with auth 1"},
		{"auth 1 with a certificate", with(AuthToken, func(m *EnrollRequest) { m.TokenKey, m.Signature, m.Certificate = key, edSig, cert }), false, "certificate with auth 1"},
		{"auth 2 without a certificate", with(AuthRenewal, func(m *EnrollRequest) { m.Signature = []byte("sig") }), false, "certificate with auth 2 of 0 bytes"},
		{"auth 2 without a signature", with(AuthRenewal, func(m *EnrollRequest) { m.Certificate = cert }), false, "signature with auth 2 of 0 bytes"},
		{"auth 2 long certificate", with(AuthRenewal, func(m *EnrollRequest) {
			m.Certificate, m.Signature = make([]byte, MaxCertLen+1), []byte("s")
		}), false, "certificate with auth 2 of 8193 bytes"},
		{"auth 2 long signature", with(AuthRenewal, func(m *EnrollRequest) {
			m.Certificate, m.Signature = cert, make([]byte, MaxSignatureLen+1)
		}), false, "signature with auth 2 of 1025 bytes"},
		{"auth 2 with a token key", with(AuthRenewal, func(m *EnrollRequest) { m.Certificate, m.Signature, m.TokenKey = cert, []byte("s"), key }), false, "token_key with auth 2"},
		{"empty sid", with(AuthNone, func(m *EnrollRequest) { m.SID = "" }), false, "sid of 0 bytes"},
		{"sid of 65", with(AuthNone, func(m *EnrollRequest) { m.SID = strings.Repeat("1", 65) }), false, "sid of 65 bytes"},
		{"empty csr", with(AuthNone, func(m *EnrollRequest) { m.CSR = nil }), false, "csr of 0 bytes"},
		{"csr over the limit", with(AuthNone, func(m *EnrollRequest) { m.CSR = make([]byte, MaxCSRLen+1) }), false, "csr of 16385 bytes"},
		{"csr at the limit", with(AuthNone, func(m *EnrollRequest) { m.CSR = make([]byte, MaxCSRLen) }), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := Marshal(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(enc)
			if tc.ok {
				if err != nil {
					t.Fatalf("got %v, want it decoded", err)
				}
				if got.(*EnrollRequest).Auth != tc.m.Auth {
					t.Errorf("got auth %d, want %d", got.(*EnrollRequest).Auth, tc.m.Auth)
				}
				return
			}
			if !isRefusal(err, CodeMalformed) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want a malformed refusal saying %q", err, tc.text)
			}
		})
	}
}

// TestEnrollBinding checks the bytes an enrollment signature covers against
// PROTOCOL.md §4.2, written out by hand.
func TestEnrollBinding(t *testing.T) {
	var root [RootFingerprintLen]byte
	for i := range root {
		root[i] = byte(i)
	}
	csr := []byte("csr der")
	sum := sha256.Sum256(csr)
	want := "pkiboard v2 enroll\x00" + "\x01" + "\x02" + "\x0ablackboard" + string(root[:]) + string(sum[:])
	if got := EnrollBinding(AuthToken, ProfileBoard, "blackboard", root, csr); string(got) != want {
		t.Errorf("got  %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString([]byte(want)))
	}
}

// TestEnrollAcceptedLimits checks the lengths EnrollAccepted's decoder bounds.
func TestEnrollAcceptedLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *EnrollAccepted
		text string // "" when it decodes
	}{
		{"ok", &EnrollAccepted{Serial: []byte{1}, Certificate: []byte{2}, Root: []byte{3}}, ""},
		{"longest", &EnrollAccepted{Serial: make([]byte, MaxSerialLen), Certificate: make([]byte, MaxCertLen), Root: make([]byte, MaxCertLen)}, ""},
		{"no serial", &EnrollAccepted{Certificate: []byte{2}, Root: []byte{3}}, "serial of 0 bytes"},
		{"long serial", &EnrollAccepted{Serial: make([]byte, MaxSerialLen+1), Certificate: []byte{2}, Root: []byte{3}}, "serial of 21 bytes"},
		{"no certificate", &EnrollAccepted{Serial: []byte{1}, Root: []byte{3}}, "certificate of 0 bytes"},
		{"long certificate", &EnrollAccepted{Serial: []byte{1}, Certificate: make([]byte, MaxCertLen+1), Root: []byte{3}}, "certificate of 8193 bytes"},
		{"no root", &EnrollAccepted{Serial: []byte{1}, Certificate: []byte{2}}, "root of 0 bytes"},
		{"long root", &EnrollAccepted{Serial: []byte{1}, Certificate: []byte{2}, Root: make([]byte, MaxCertLen+1)}, "root of 8193 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(mustMarshal(tc.m))
			if tc.text == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !isRefusal(err, CodeMalformed) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want a malformed refusal saying %q", err, tc.text)
			}
		})
	}
}
