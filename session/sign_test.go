package session

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"pkiboard/wire"
)

func TestSignVerify(t *testing.T) {
	p := pki(t)
	msg := signedMessage(contextServerVerify, bytes.Repeat([]byte{7}, 32))
	for _, kt := range []string{"p256", "p384", "rsa2048"} {
		t.Run(kt, func(t *testing.T) {
			key := p.keys[kt]
			sig, err := SignMessage(key, rand.Reader, msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyMessage(key.Public(), msg, sig); err != nil {
				t.Errorf("VerifyMessage: %v", err)
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
				if err := VerifyMessage(k, msg, other); !errors.Is(err, ErrBadSignature) {
					t.Errorf("a PSS signature with a 20-byte salt: got %v, want ErrBadSignature", err)
				}
			}
			changed := bytes.Clone(msg)
			changed[len(changed)-1] ^= 1
			if err := VerifyMessage(key.Public(), changed, sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("another message: got %v, want ErrBadSignature", err)
			}
			if err := VerifyMessage(p.board.key.Public(), msg, sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("another key: got %v, want ErrBadSignature", err)
			}
		})
	}
	ed := ed25519Key()
	if _, err := SignMessage(ed, nil, msg); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("SignMessage with Ed25519: got %v, want ErrUnsupportedKey", err)
	}
	if err := VerifyMessage(ed.Public(), msg, []byte{1}); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("VerifyMessage with Ed25519: got %v, want ErrUnsupportedKey", err)
	}
}

// TestStatementBytes checks the statement byte for byte against PROTOCOL.md
// §5.4.
func TestStatementBytes(t *testing.T) {
	var th, sum [32]byte
	for i := range th {
		th[i], sum[i] = 0x11, 0x22
	}
	got, err := Statement(th, "1155000001", "message.txt", 290, sum)
	if err != nil {
		t.Fatal(err)
	}
	want := "706b69626f617264207631207375626d697373696f6e00" + // "pkiboard v1 submission" 0x00
		strings.Repeat("11", 32) + // TH
		"0a" + hex.EncodeToString([]byte("1155000001")) + // sid: string8
		"0b" + hex.EncodeToString([]byte("message.txt")) + // name: string8
		"0000000000000122" + // size: u64
		strings.Repeat("22", 32) // sha256
	if hex.EncodeToString(got) != want {
		t.Errorf("Statement =\n%x\nwant\n%s", got, want)
	}
	if _, err := Statement(th, strings.Repeat("s", 256), "m", 1, sum); err == nil {
		t.Error("Statement with a 256-byte SID succeeded")
	}
}

func TestReceiptSignedBytes(t *testing.T) {
	r := &wire.Receipt{ID: "a", SID: "b", Serial: []byte{0x0c}, Name: "d", Size: 5, Received: 6, Signature: []byte{9, 9}}
	got, err := ReceiptSignedBytes(r)
	if err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString([]byte("pkiboard v1 receipt\x00")) +
		"0161" + "0162" + "010c" + "0164" + "0000000000000005" + strings.Repeat("00", 32) + "0000000000000006"
	if hex.EncodeToString(got) != want {
		t.Errorf("ReceiptSignedBytes =\n%x\nwant\n%s", got, want)
	}
}

// TestVerifyOfflineUsage checks the usage rule of the offline checks behind
// VerifyReceipt and VerifyStatement: the leaf must name the usage itself; one
// without the extension or with anyExtendedKeyUsage, which Go's x509 would
// take for any purpose, is refused, as is a CA.
func TestVerifyOfflineUsage(t *testing.T) {
	p := pki(t)
	key := ecKey(elliptic.P256(), "offline usage")
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tests := []struct {
		name   string
		spec   certSpec
		usage  x509.ExtKeyUsage
		wantOK bool
	}{
		{"clientAuth for clientAuth", certSpec{eku: client}, x509.ExtKeyUsageClientAuth, true},
		{"clientAuth and serverAuth for serverAuth", certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}},
			x509.ExtKeyUsageServerAuth, true},
		{"clientAuth for serverAuth", certSpec{eku: client}, x509.ExtKeyUsageServerAuth, false},
		{"no extension", certSpec{eku: []x509.ExtKeyUsage{}}, x509.ExtKeyUsageClientAuth, false},
		{"anyExtendedKeyUsage", certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}, x509.ExtKeyUsageClientAuth, false},
		{"a CA with clientAuth", certSpec{eku: client, isCA: true}, x509.ExtKeyUsageClientAuth, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.cn, tt.spec.key = testSID, key
			id := p.root.issue(tt.spec)
			err := verifyOffline(id.chain, p.root.pool, id.leaf().NotBefore.Add(time.Hour), tt.usage)
			if (err == nil) != tt.wantOK {
				t.Errorf("got %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}
