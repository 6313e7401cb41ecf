package keys

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// openssl returns the path of the openssl binary. Without one the test is
// skipped, unless PKIBOARD_REQUIRE_OPENSSL=1, in which case it fails.
func openssl(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		msg := fmt.Sprintf("openssl not found on PATH: %v", err)
		if os.Getenv("PKIBOARD_REQUIRE_OPENSSL") == "1" {
			t.Fatalf("%s (PKIBOARD_REQUIRE_OPENSSL=1, so this is a failure)", msg)
		}
		t.Skipf("%s; set PKIBOARD_REQUIRE_OPENSSL=1 to make this a failure", msg)
	}
	return bin
}

// run runs openssl with args and returns its standard output; a non-zero
// exit fails the test with its standard error.
func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	out, err := runErr(bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runErr(bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		alg  string
		want string // Describe of the public key
	}{
		{"ecdsa-p256", "ECDSA P-256"},
		{"ecdsa-p384", "ECDSA P-384"},
		{"rsa-2048", "RSA-2048"},
		{"rsa-3072", "RSA-3072"},
		{"rsa-4096", "RSA-4096"},
	}
	if len(tests) != len(Algorithms) {
		t.Fatalf("table covers %d algorithms, Algorithms lists %d", len(tests), len(Algorithms))
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			if testing.Short() && strings.HasPrefix(tt.alg, "rsa-") && tt.alg != "rsa-2048" {
				t.Skip("slow RSA key generation in -short mode")
			}
			key, err := Generate(tt.alg)
			if err != nil {
				t.Fatal(err)
			}
			if got := Describe(key.Public()); got != tt.want {
				t.Errorf("got %s want %s", got, tt.want)
			}
			if got := AlgorithmName(key.Public()); got != tt.alg {
				t.Errorf("AlgorithmName: got %s want %s", got, tt.alg)
			}
			if err := Supported(key.Public()); err != nil {
				t.Errorf("Supported: %v", err)
			}
			other, err := Generate(tt.alg)
			if err != nil {
				t.Fatal(err)
			}
			if SamePublicKey(key.Public(), other.Public()) {
				t.Error("two generated keys are equal")
			}
			if !SamePublicKey(key.Public(), key.Public()) {
				t.Error("SamePublicKey(k, k) is false")
			}
		})
	}
	if _, err := Generate("ed25519"); err == nil || !strings.Contains(err.Error(), "ecdsa-p256") {
		t.Errorf("Generate(ed25519): got %v, want an error listing the algorithms", err)
	}
}

// TestParsePrivatePEMFixtures reads keys openssl wrote in every form it
// writes (testdata/README.md says how they were made).
func TestParsePrivatePEMFixtures(t *testing.T) {
	tests := []struct {
		file    string
		want    string // Describe of the key, or "" for an error
		wantErr string
	}{
		{file: "rsa-pkcs1.pem", want: "RSA-2048"},
		{file: "ec-p256-sec1.pem", want: "ECDSA P-256"},
		{file: "rsa-pkcs8.pem", want: "RSA-2048"},
		{file: "ec-p384-pkcs8.pem", want: "ECDSA P-384"},
		{file: "ed25519-pkcs8.pem", wantErr: "keys: ed25519.PublicKey keys are not supported"},
		{file: "cert.pem", wantErr: `"CERTIFICATE" is not a private key`},
		{file: "README.md", wantErr: "no PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			key, err := ParsePrivatePEM(readFixture(t, tt.file), nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := Describe(key.Public()); got != tt.want {
				t.Errorf("got %s want %s", got, tt.want)
			}
			// A key read in another form re-encodes as PKCS#8 and reads back.
			pemData, err := MarshalPrivatePEM(key, nil)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParsePrivatePEM(pemData, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !SamePublicKey(key.Public(), again.Public()) {
				t.Error("re-encoded key differs")
			}
		})
	}
}

func TestReadWritePrivateKey(t *testing.T) {
	key, err := Generate("ecdsa-p256")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sub", "key.pem")
	if err := WritePrivateKey(path, key, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode: got %o want 600", got)
	}
	got, err := ReadPrivateKey(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !SamePublicKey(key.Public(), got.Public()) {
		t.Error("read key differs from written key")
	}
	if _, err := ReadPrivateKey(filepath.Join(t.TempDir(), "missing.pem"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v want os.ErrNotExist", err)
	}
}

var fingerprintRE = regexp.MustCompile(`^[0-9A-F]{2}(:[0-9A-F]{2}){31}$`)

func TestFingerprintHex(t *testing.T) {
	certs, err := ParseCertificatesPEM(readFixture(t, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	got := FingerprintHex(certs[0])
	if !fingerprintRE.MatchString(got) {
		t.Errorf("format: %q is not 32 colon-separated uppercase hex pairs", got)
	}
	// The golden file is openssl's output, made once (testdata/README.md).
	golden := strings.TrimSpace(string(readFixture(t, "cert.pem.sha256")))
	if want := "sha256 Fingerprint=" + got; golden != want {
		t.Errorf("got %q want (from testdata/cert.pem.sha256) %q", want, golden)
	}

	t.Run("openssl", func(t *testing.T) {
		bin := openssl(t)
		key, err := Generate("ecdsa-p256")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		keyPath := filepath.Join(dir, "key.pem")
		if err := WritePrivateKey(keyPath, key, nil); err != nil {
			t.Fatal(err)
		}
		certPath := filepath.Join(dir, "cert.pem")
		run(t, bin, "req", "-x509", "-key", keyPath, "-subj", "/CN=fingerprint", "-days", "1", "-out", certPath)
		cert, err := ReadCertificate(certPath)
		if err != nil {
			t.Fatal(err)
		}
		out := strings.TrimSpace(string(run(t, bin, "x509", "-in", certPath, "-noout", "-fingerprint", "-sha256")))
		if want := "sha256 Fingerprint=" + FingerprintHex(cert); out != want {
			t.Errorf("openssl printed %q, want %q", out, want)
		}
	})
}

func TestMatchesFingerprint(t *testing.T) {
	certs, err := ParseCertificatesPEM(readFixture(t, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// The expected value is openssl's, from the golden file, not our own hash.
	golden := strings.TrimPrefix(strings.TrimSpace(string(readFixture(t, "cert.pem.sha256"))), "sha256 Fingerprint=")
	want, err := hex.DecodeString(strings.ReplaceAll(golden, ":", ""))
	if err != nil || len(want) != 32 {
		t.Fatalf("golden fingerprint %q: %v", golden, err)
	}
	flipped := bytes.Clone(want)
	flipped[31] ^= 1
	tests := []struct {
		name string
		fp   []byte
		ok   bool
	}{
		{"openssl's fingerprint", want, true},
		{"last bit flipped", flipped, false},
		{"truncated", want[:31], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := MatchesFingerprint(certs[0], tt.fp); got != tt.ok {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestParseCertificatesPEM(t *testing.T) {
	cert := readFixture(t, "cert.pem")
	key := readFixture(t, "ec-p384-pkcs8.pem")
	tests := []struct {
		name    string
		data    []byte
		n       int
		wantErr string
	}{
		{"one", cert, 1, ""},
		{"two", append(append([]byte{}, cert...), cert...), 2, ""},
		{"none", []byte("nothing here"), 0, "no certificate"},
		{"a key", key, 0, "is not a certificate"},
		{"trailing junk", append(append([]byte{}, cert...), "junk"...), 0, "unexpected data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := ParseCertificatesPEM(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != tt.n {
				t.Errorf("got %d certificates want %d", len(certs), tt.n)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pub  any
		want string
		alg  string // AlgorithmName
	}{
		{p224.Public(), "ECDSA P-224", "ECDSA P-224"},
		{&rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 1023), E: 65537}, "RSA-1024", "rsa-1024"},
		{edPub, "Ed25519", "Ed25519"},
		{x25519.PublicKey(), "ECDH", "ECDH"},
		{"not a key", "string", "string"},
	}
	for _, tt := range tests {
		if got := Describe(tt.pub); got != tt.want {
			t.Errorf("Describe(%T): got %s want %s", tt.pub, got, tt.want)
		}
		if got := AlgorithmName(tt.pub); got != tt.alg {
			t.Errorf("AlgorithmName(%T): got %s want %s", tt.pub, got, tt.alg)
		}
	}
}

func TestSupported(t *testing.T) {
	rsaBits := func(n int) *rsa.PublicKey {
		return &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), uint(n-1)), E: 65537}
	}
	ecKey := func(c elliptic.Curve) *ecdsa.PublicKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		pub   any
		ok    bool
		bits  int
		curve string
		text  string // a substring of the error
	}{
		{"RSA-2047", rsaBits(2047), false, 2047, "", "an RSA key of 2047 bits is not supported"},
		{"RSA-2048", rsaBits(2048), true, 0, "", ""},
		{"RSA-8192", rsaBits(8192), true, 0, "", ""},
		{"RSA-8193", rsaBits(8193), false, 8193, "", "an RSA key of 8193 bits"},
		{"P-224", ecKey(elliptic.P224()), false, 0, "P-224", "an ECDSA key on P-224 is not supported"},
		{"P-256", ecKey(elliptic.P256()), true, 0, "", ""},
		{"P-384", ecKey(elliptic.P384()), true, 0, "", ""},
		{"P-521", ecKey(elliptic.P521()), false, 0, "P-521", "P-521"},
		{"Ed25519", edPub, false, 0, "", "a Ed25519 key is not supported"},
		{"something else", "a string", false, 0, "", "a string key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Supported(tt.pub)
			if tt.ok {
				if err != nil {
					t.Errorf("got %v want nil", err)
				}
				return
			}
			var u *UnsupportedKeyError
			if !errors.As(err, &u) {
				t.Fatalf("got %v want an *UnsupportedKeyError", err)
			}
			if !reflect.DeepEqual(u.Key, tt.pub) || u.Bits != tt.bits || u.Curve != tt.curve {
				t.Errorf("got {%s, %d, %q} want {%s, %d, %q}", Describe(u.Key), u.Bits, u.Curve, Describe(tt.pub), tt.bits, tt.curve)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "keys: ") || !strings.Contains(msg, tt.text) {
				t.Errorf("got %q, want it to start keys: and contain %q", msg, tt.text)
			}
		})
	}
}

func TestSerialHex(t *testing.T) {
	tests := []struct {
		serial *big.Int
		want   string
	}{
		{big.NewInt(1), "01"},
		{big.NewInt(0x7f), "7f"},
		{big.NewInt(0x80), "80"}, // no sign byte, unlike the DER encoding
		{new(big.Int).SetBytes([]byte{0xab, 0x00, 0xcd}), "ab00cd"},
		{new(big.Int).Lsh(big.NewInt(1), 127), "80000000000000000000000000000000"},
	}
	for _, tt := range tests {
		if got := SerialHex(tt.serial); got != tt.want {
			t.Errorf("SerialHex(%v): got %s want %s", tt.serial, got, tt.want)
		}
	}
}
