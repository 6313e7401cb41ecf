package session

import (
	"crypto/elliptic"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"pkiboard/wire"
)

// TestStatementBytes checks the statements of version 3 and 2 byte for byte
// against PROTOCOL.md §5.4: version 3 covers the terms as sent and the
// original name.
func TestStatementBytes(t *testing.T) {
	var th, sum [32]byte
	for i := range th {
		th[i], sum[i] = 0x11, 0x22
	}
	terms := []byte{0xde, 0xad}
	got, err := Statement(th, "1155000001", terms, "Ré.txt", "R__.txt", 290, sum)
	if err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString([]byte("pkiboard v3 submission\x00")) +
		strings.Repeat("11", 32) + // TH
		"0a" + hex.EncodeToString([]byte("1155000001")) + // sid: string8
		"dead" + // the terms, as sent
		"0007" + hex.EncodeToString([]byte("Ré.txt")) + // original: string16
		"07" + hex.EncodeToString([]byte("R__.txt")) + // name: string8
		"0000000000000122" + // size: u64
		strings.Repeat("22", 32) // sha256
	if hex.EncodeToString(got) != want {
		t.Errorf("Statement =\n%x\nwant\n%s", got, want)
	}
	if _, err := Statement(th, strings.Repeat("s", 256), terms, "m", "m", 1, sum); err == nil {
		t.Error("Statement with a 256-byte SID succeeded")
	}
	got, err = StatementV2(th, "1155000001", "message.txt", 290, sum)
	if err != nil {
		t.Fatal(err)
	}
	want = "706b69626f617264207632207375626d697373696f6e00" + // "pkiboard v2 submission" 0x00
		strings.Repeat("11", 32) + "0a" + hex.EncodeToString([]byte("1155000001")) +
		"0b" + hex.EncodeToString([]byte("message.txt")) + "0000000000000122" + strings.Repeat("22", 32)
	if hex.EncodeToString(got) != want {
		t.Errorf("StatementV2 =\n%x\nwant\n%s", got, want)
	}
}

func TestReceiptSignedBytes(t *testing.T) {
	r := &wire.Receipt{ID: "a", SID: "b", Serial: []byte{0x0c}, Assignment: "h", Original: "o", Name: "d", Size: 5,
		Received: 6, Due: 7, Late: 8, Version: 9, Signature: []byte{9, 9}}
	r.BoardCertSHA256[0], r.BoardCertSHA256[31] = 0xb0, 0x0b
	got, err := ReceiptSignedBytes(r)
	if err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString([]byte("pkiboard v3 receipt\x00")) +
		"0161" + "0162" + "010c" + "0168" + "00016f" + "0164" + "0000000000000005" + strings.Repeat("00", 32) +
		"0000000000000006" + "0000000000000007" + "0000000000000008" + "00000009" +
		"b0" + strings.Repeat("00", 30) + "0b" // board_cert_sha256
	if hex.EncodeToString(got) != want {
		t.Errorf("ReceiptSignedBytes =\n%x\nwant\n%s", got, want)
	}
	v2 := &wire.ReceiptV2{ID: "a", SID: "b", Serial: []byte{0x0c}, Name: "d", Size: 5, Received: 6, Signature: []byte{9, 9}}
	v2.BoardCertSHA256[0], v2.BoardCertSHA256[31] = 0xb0, 0x0b
	got, err = ReceiptV2SignedBytes(v2)
	if err != nil {
		t.Fatal(err)
	}
	want = hex.EncodeToString([]byte("pkiboard v2 receipt\x00")) +
		"0161" + "0162" + "010c" + "0164" + "0000000000000005" + strings.Repeat("00", 32) + "0000000000000006" +
		"b0" + strings.Repeat("00", 30) + "0b" // board_cert_sha256
	if hex.EncodeToString(got) != want {
		t.Errorf("ReceiptV2SignedBytes =\n%x\nwant\n%s", got, want)
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
			err := verifyOffline(id.leaf(), p.root.cert, id.leaf().NotBefore.Add(time.Hour), tt.usage)
			if (err == nil) != tt.wantOK {
				t.Errorf("got %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}
