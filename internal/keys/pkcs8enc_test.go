package keys

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pkiboard/internal/fuzzseed"
)

const testPassphrase = "pkiboard-test" // the passphrase of the fixtures

// fastParams encrypts with the fewest iterations DecryptPKCS8 accepts, to
// keep tests that only exercise the format quick.
var fastParams = pbeParams{iterations: MinIterations, prf: oidHMACWithSHA256, cipher: oidAES256CBC}

func mustGenerate(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	key, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func pkcs8DER(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemBytes(t testing.TB, data []byte, wantType string) []byte {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != wantType {
		t.Fatalf("want one PEM block %q in %q", wantType, data)
	}
	return block.Bytes
}

func TestEncryptedPEMRoundTrip(t *testing.T) {
	for _, alg := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			key := mustGenerate(t, alg)
			pass := []byte("correct horse battery staple")
			data, err := MarshalPrivatePEM(key, pass)
			if err != nil {
				t.Fatal(err)
			}
			der := pemBytes(t, data, "ENCRYPTED PRIVATE KEY")
			if bytes.Contains(der, pkcs8DER(t, key)) {
				t.Fatal("the encrypted key contains the plaintext key")
			}
			got, err := ParsePrivatePEM(data, pass)
			if err != nil {
				t.Fatal(err)
			}
			if !SamePublicKey(key.Public(), got.Public()) {
				t.Error("decrypted key differs")
			}
			for _, wrong := range [][]byte{[]byte("correct horse battery stapler"), nil} {
				if _, err := ParsePrivatePEM(data, wrong); !errors.Is(err, ErrPassphrase) {
					t.Errorf("passphrase %q: got %v want ErrPassphrase", wrong, err)
				}
			}
		})
	}
}

// TestEncryptPKCS8Format checks the parameters EncryptPKCS8 writes.
func TestEncryptPKCS8Format(t *testing.T) {
	der := pkcs8DER(t, mustGenerate(t, "ecdsa-p256"))
	enc, err := EncryptPKCS8(der, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	info, params, kdf, iv := decodePBES2(t, enc)
	checks := []struct {
		what      string
		got, want any
	}{
		{"scheme", info.Algorithm.Algorithm.String(), oidPBES2.String()},
		{"kdf", params.KeyDerivationFunc.Algorithm.String(), oidPBKDF2.String()},
		{"prf", kdf.PRF.Algorithm.String(), oidHMACWithSHA256.String()},
		{"iterations", kdf.IterationCount, Iterations},
		{"salt length", len(kdf.Salt), 16},
		{"key length field", kdf.KeyLength, 0},
		{"cipher", params.EncryptionScheme.Algorithm.String(), oidAES256CBC.String()},
		{"iv length", len(iv), 16},
		{"ciphertext blocks", len(info.EncryptedData) % 16, 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v want %v", c.what, c.got, c.want)
		}
	}
	// Two encryptions of the same key under the same passphrase draw a fresh
	// salt and a fresh IV each.
	enc2, err := EncryptPKCS8(der, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, kdf2, iv2 := decodePBES2(t, enc2)
	if bytes.Equal(kdf.Salt, kdf2.Salt) {
		t.Error("two encryptions share the salt")
	}
	if bytes.Equal(iv, iv2) {
		t.Error("two encryptions share the IV")
	}
	if _, err := EncryptPKCS8([]byte{0x30, 0}, nil); err == nil {
		t.Error("EncryptPKCS8 with an empty passphrase succeeded")
	}
}

// decodePBES2 takes apart an EncryptedPrivateKeyInfo that EncryptPKCS8 wrote.
func decodePBES2(t *testing.T, enc []byte) (info encryptedPrivateKeyInfo, params pbes2Params, kdf pbkdf2Params, iv []byte) {
	t.Helper()
	if err := unmarshalDER(enc, &info); err != nil {
		t.Fatal(err)
	}
	if err := unmarshalDER(info.Algorithm.Parameters.FullBytes, &params); err != nil {
		t.Fatal(err)
	}
	if err := unmarshalDER(params.KeyDerivationFunc.Parameters.FullBytes, &kdf); err != nil {
		t.Fatal(err)
	}
	if err := unmarshalDER(params.EncryptionScheme.Parameters.FullBytes, &iv); err != nil {
		t.Fatal(err)
	}
	return info, params, kdf, iv
}

// TestDecryptVariants covers the PRFs and ciphers DecryptPKCS8 reads besides
// its own default.
func TestDecryptVariants(t *testing.T) {
	der := pkcs8DER(t, mustGenerate(t, "ecdsa-p256"))
	tests := []struct {
		name   string
		prf    asn1.ObjectIdentifier
		cipher asn1.ObjectIdentifier
	}{
		{"sha256 aes-256", oidHMACWithSHA256, oidAES256CBC},
		{"sha256 aes-128", oidHMACWithSHA256, oidAES128CBC},
		{"sha256 aes-192", oidHMACWithSHA256, oidAES192CBC},
		{"sha1 aes-256", oidHMACWithSHA1, oidAES256CBC},
		{"sha1 aes-128", oidHMACWithSHA1, oidAES128CBC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := encryptPKCS8(rand.Reader, der, []byte("pw"), pbeParams{MinIterations, tt.prf, tt.cipher})
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecryptPKCS8(enc, []byte("pw"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, der) {
				t.Error("decrypted DER differs")
			}
			if _, err := DecryptPKCS8(enc, []byte("pW")); !errors.Is(err, ErrPassphrase) {
				t.Errorf("wrong passphrase: got %v want ErrPassphrase", err)
			}
		})
	}
}

// TestWrongPassphraseNeverYieldsAKey tries many wrong passphrases: a chance
// valid padding (about 1 in 256) must still be reported as ErrPassphrase,
// never returned as a key.
func TestWrongPassphraseNeverYieldsAKey(t *testing.T) {
	enc, err := encryptPKCS8(rand.Reader, pkcs8DER(t, mustGenerate(t, "ecdsa-p256")), []byte("right"), fastParams)
	if err != nil {
		t.Fatal(err)
	}
	n := 1000
	if testing.Short() {
		n = 100
	}
	for i := range n {
		pass := fmt.Appendf(nil, "wrong-%d", i)
		if got, err := DecryptPKCS8(enc, pass); !errors.Is(err, ErrPassphrase) {
			t.Fatalf("passphrase %q: got %x, %v want ErrPassphrase", pass, got, err)
		}
	}
}

func TestUnpad(t *testing.T) {
	// block returns 32 bytes ending in tail.
	block := func(tail ...byte) []byte {
		return append(bytes.Repeat([]byte{0xAA}, 32-len(tail)), tail...)
	}
	full := bytes.Repeat([]byte{16}, 16)
	tests := []struct {
		name  string
		in    []byte
		n, ok int
	}{
		{"one byte", block(1), 31, 1},
		{"three bytes", block(3, 3, 3), 29, 1},
		{"three bytes after a lookalike", block(9, 3, 3, 3), 29, 1},
		{"whole block", block(full...), 16, 1},
		{"only padding", full, 0, 1},
		{"zero", block(0), 0, 0},
		{"seventeen", block(17), 0, 0},
		{"255", block(255), 0, 0},
		{"broken run", block(3, 2, 3), 0, 0},
		{"run too short", block(4, 4, 4), 0, 0},
		{"mismatch in a full block", block(append([]byte{15}, full[1:]...)...), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := unpad(tt.in)
			if n != tt.n || ok != tt.ok {
				t.Errorf("got (%d, %d) want (%d, %d)", n, ok, tt.n, tt.ok)
			}
		})
	}
}

// buildPBES2 encodes an EncryptedPrivateKeyInfo with the given parts, without
// encrypting anything, to test how decoding treats unusual parameters.
func buildPBES2(t *testing.T, kdf any, cipherOID asn1.ObjectIdentifier, iv, data []byte) []byte {
	t.Helper()
	kdfDER, err := asn1.Marshal(kdf)
	if err != nil {
		t.Fatal(err)
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		t.Fatal(err)
	}
	paramsDER, err := asn1.Marshal(pbes2Params{
		KeyDerivationFunc: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdfDER}},
		EncryptionScheme:  pkix.AlgorithmIdentifier{Algorithm: cipherOID, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm:     pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: paramsDER}},
		EncryptedData: data,
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestDecryptRefusesBadParameters(t *testing.T) {
	iv, data := make([]byte, 16), make([]byte, 32)
	sha256PRF := pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue}
	kdf := func(saltLen, iter, keyLen int, prf pkix.AlgorithmIdentifier) pbkdf2Params {
		return pbkdf2Params{Salt: make([]byte, saltLen), IterationCount: iter, KeyLength: keyLen, PRF: prf}
	}
	good, err := encryptPKCS8(rand.Reader, pkcs8DER(t, mustGenerate(t, "ecdsa-p256")), []byte("pw"), fastParams)
	if err != nil {
		t.Fatal(err)
	}
	des3 := asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	sha512 := asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	tests := []struct {
		name    string
		der     []byte
		wantErr string
	}{
		{"garbage", []byte("not DER at all"), "decode encrypted private key"},
		{"empty", nil, "decode encrypted private key"},
		{"trailing data", append(append([]byte{}, good...), 0), "trailing data"},
		{"too few iterations", buildPBES2(t, kdf(16, MinIterations-1, 0, sha256PRF), oidAES256CBC, iv, data), "iteration count 999"},
		{"too many iterations", buildPBES2(t, kdf(16, MaxIterations+1, 0, sha256PRF), oidAES256CBC, iv, data), "iteration count 10000001"},
		{"negative iterations", buildPBES2(t, kdf(16, -5, 0, sha256PRF), oidAES256CBC, iv, data), "iteration count -5"},
		{"short salt", buildPBES2(t, kdf(4, 2048, 0, sha256PRF), oidAES256CBC, iv, data), "salt of 4 bytes"},
		{"long salt", buildPBES2(t, kdf(65, 2048, 0, sha256PRF), oidAES256CBC, iv, data), "salt of 65 bytes"},
		{"unknown prf", buildPBES2(t, kdf(16, 2048, 0, pkix.AlgorithmIdentifier{Algorithm: sha512}), oidAES256CBC, iv, data), "PRF 1.2.840.113549.2.11"},
		{"prf with parameters", buildPBES2(t, kdf(16, 2048, 0, pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1.RawValue{FullBytes: []byte{4, 1, 0}}}), oidAES256CBC, iv, data), "absent or NULL"},
		{"key length mismatch", buildPBES2(t, kdf(16, 2048, 16, sha256PRF), oidAES256CBC, iv, data), "key length 16"},
		{"3des", buildPBES2(t, kdf(16, 2048, 0, sha256PRF), des3, iv[:8], data), "only AES-CBC"},
		{"short iv", buildPBES2(t, kdf(16, 2048, 0, sha256PRF), oidAES256CBC, iv[:8], data), "IV of 8 bytes"},
		{"partial block", buildPBES2(t, kdf(16, 2048, 0, sha256PRF), oidAES256CBC, iv, data[:20]), "not a whole number"},
		{"no data", buildPBES2(t, kdf(16, 2048, 0, sha256PRF), oidAES256CBC, iv, nil), "not a whole number"},
		{"pbes1", pemBytes(t, readFixture(t, "enc-pbes1.pem"), "ENCRYPTED PRIVATE KEY"), "only PBES2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecryptPKCS8(tt.der, []byte(testPassphrase))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v want an error containing %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrPassphrase) {
				t.Errorf("a format error is reported as a wrong passphrase: %v", err)
			}
		})
	}
	// The well-formed zero ciphertext of the table decrypts to noise: that is
	// a wrong passphrase, not a format error.
	der := buildPBES2(t, kdf(16, 2048, 32, sha256PRF), oidAES256CBC, iv, data)
	if _, err := DecryptPKCS8(der, []byte("pw")); !errors.Is(err, ErrPassphrase) {
		t.Errorf("noise: got %v want ErrPassphrase", err)
	}
}

// TestDecryptOpenSSLFixtures reads keys encrypted by openssl, made once
// (testdata/README.md).
func TestDecryptOpenSSLFixtures(t *testing.T) {
	rsaKey, err := ParsePrivatePEM(readFixture(t, "rsa-pkcs8.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file string
		want string
		same crypto.Signer // the key it must be, or nil
	}{
		{"enc-aes256-sha256.pem", "ECDSA P-256", nil},
		{"enc-aes128-sha1.pem", "RSA-2048", rsaKey},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := readFixture(t, tt.file)
			key, err := ParsePrivatePEM(data, []byte(testPassphrase))
			if err != nil {
				t.Fatal(err)
			}
			if got := Describe(key.Public()); got != tt.want {
				t.Errorf("got %s want %s", got, tt.want)
			}
			if tt.same != nil && !SamePublicKey(key.Public(), tt.same.Public()) {
				t.Error("decrypted key is not the key that was encrypted")
			}
			if _, err := ParsePrivatePEM(data, []byte("wrong")); !errors.Is(err, ErrPassphrase) {
				t.Errorf("wrong passphrase: got %v want ErrPassphrase", err)
			}
		})
	}
}

// publicPEM returns the SubjectPublicKeyInfo of key as openssl's -pubout
// prints it.
func publicPEM(t *testing.T, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestOpenSSLReadsOurs has the real openssl decrypt keys EncryptPKCS8 wrote.
func TestOpenSSLReadsOurs(t *testing.T) {
	bin := openssl(t)
	pass := "s3cret with spaces"
	for _, alg := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			key := mustGenerate(t, alg)
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := WritePrivateKey(path, key, []byte(pass)); err != nil {
				t.Fatal(err)
			}
			run(t, bin, "pkey", "-in", path, "-passin", "pass:"+pass, "-noout")
			pub := run(t, bin, "pkey", "-in", path, "-passin", "pass:"+pass, "-pubout")
			if got, want := string(pub), publicPEM(t, key); got != want {
				t.Errorf("openssl's public key:\n%s\nwant:\n%s", got, want)
			}
			if _, err := runErr(bin, "pkey", "-in", path, "-passin", "pass:wrong", "-noout"); err == nil {
				t.Error("openssl accepted a wrong passphrase")
			}
		})
	}
}

// TestWeReadOpenSSLs decrypts keys the real openssl encrypts now.
func TestWeReadOpenSSLs(t *testing.T) {
	bin := openssl(t)
	pass := "openssl-made"
	dir := t.TempDir()
	plainPath := filepath.Join(dir, "plain.pem")
	ours := mustGenerate(t, "ecdsa-p384")
	if err := WritePrivateKey(plainPath, ours, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		same crypto.Signer
	}{
		{"genpkey -aes-256-cbc", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes-256-cbc", "-pass", "pass:" + pass}, nil},
		{"genpkey rsa -aes-256-cbc", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes-256-cbc", "-pass", "pass:" + pass}, nil},
		{"pkcs8 -v2 aes-256-cbc hmacWithSHA256", []string{"pkcs8", "-topk8", "-in", plainPath, "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256", "-passout", "pass:" + pass}, ours},
		{"pkcs8 -v2 aes-128-cbc hmacWithSHA1", []string{"pkcs8", "-topk8", "-in", plainPath, "-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1", "-passout", "pass:" + pass}, ours},
		{"pkcs8 -iter 100000", []string{"pkcs8", "-topk8", "-in", plainPath, "-v2", "aes-256-cbc", "-iter", "100000", "-passout", "pass:" + pass}, ours},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := run(t, bin, tt.args...)
			key, err := ParsePrivatePEM(data, []byte(pass))
			if err != nil {
				t.Fatal(err)
			}
			if tt.same != nil && !SamePublicKey(key.Public(), tt.same.Public()) {
				t.Error("decrypted key is not the key openssl encrypted")
			}
			// Compare with the public key openssl derives itself.
			path := filepath.Join(t.TempDir(), "enc.pem")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			pub := run(t, bin, "pkey", "-in", path, "-passin", "pass:"+pass, "-pubout")
			if got := publicPEM(t, key); got != string(pub) {
				t.Errorf("our public key:\n%s\nopenssl's:\n%s", got, pub)
			}
			if _, err := ParsePrivatePEM(data, []byte(pass+"x")); !errors.Is(err, ErrPassphrase) {
				t.Errorf("wrong passphrase: got %v want ErrPassphrase", err)
			}
		})
	}
}

// fuzzMaxIterations bounds PBKDF2 in the fuzz target, so that one input
// costs milliseconds; the seeds use MinIterations or openssl's 2048.
const fuzzMaxIterations = 4096

// FuzzDecryptPKCS8 feeds arbitrary DER and passphrases to the decoder: it
// must not panic, and whatever it accepts must be one DER SEQUENCE that
// encrypts and decrypts back to itself. Seeds live in
// testdata/fuzz/FuzzDecryptPKCS8 (see TestWriteFuzzSeeds).
func FuzzDecryptPKCS8(f *testing.F) {
	f.Fuzz(func(t *testing.T, der, pass []byte) {
		plain, err := decryptPKCS8(der, pass, fuzzMaxIterations)
		if err != nil {
			if plain != nil {
				t.Fatal("error with a non-nil result")
			}
			return
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(plain, &seq); err != nil || len(rest) != 0 || seq.Tag != asn1.TagSequence {
			t.Fatalf("accepted plaintext %x is not one DER SEQUENCE", plain)
		}
		if len(pass) == 0 {
			return // EncryptPKCS8 refuses an empty passphrase
		}
		enc, err := encryptPKCS8(rand.Reader, plain, pass, fastParams)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decryptPKCS8(enc, pass, fuzzMaxIterations)
		if err != nil || !bytes.Equal(again, plain) {
			t.Fatalf("re-encrypted plaintext does not round-trip: %v", err)
		}
	})
}

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzDecryptPKCS8")

// fuzzSeeds returns the named seed inputs of FuzzDecryptPKCS8.
func fuzzSeeds(t *testing.T) map[string][2][]byte {
	der := pkcs8DER(t, mustGenerate(t, "ecdsa-p256"))
	seeds := map[string][2][]byte{}
	for _, p := range []struct {
		name string
		p    pbeParams
	}{
		{"ours-sha256-aes256", fastParams},
		{"ours-sha1-aes128", pbeParams{MinIterations, oidHMACWithSHA1, oidAES128CBC}},
	} {
		enc, err := encryptPKCS8(rand.Reader, der, []byte("seed"), p.p)
		if err != nil {
			t.Fatal(err)
		}
		seeds[p.name] = [2][]byte{enc, []byte("seed")}
		seeds[p.name+"-wrong-passphrase"] = [2][]byte{enc, []byte("seeds")}
		seeds[p.name+"-truncated"] = [2][]byte{enc[:len(enc)/2], []byte("seed")}
	}
	for _, file := range []string{"enc-aes256-sha256.pem", "enc-aes128-sha1.pem", "enc-pbes1.pem"} {
		enc := pemBytes(t, readFixture(t, file), "ENCRYPTED PRIVATE KEY")
		seeds["openssl-"+strings.TrimSuffix(file, ".pem")] = [2][]byte{enc, []byte(testPassphrase)}
	}
	seeds["empty"] = [2][]byte{nil, nil}
	seeds["garbage"] = [2][]byte{[]byte("\x30\x80\x00\x00"), []byte("x")}
	return seeds
}

// TestWriteFuzzSeeds rewrites the seed corpus when run with -update-seeds;
// otherwise it checks that the committed corpus holds every seed (the
// encryptions use fresh salts, so not byte for byte).
func TestWriteFuzzSeeds(t *testing.T) {
	seeds := map[string][]any{}
	for name, in := range fuzzSeeds(t) {
		seeds[name] = []any{in[0], in[1]}
	}
	if *updateSeeds {
		if err := os.RemoveAll(fuzzseed.Dir("FuzzDecryptPKCS8")); err != nil {
			t.Fatal(err)
		}
		if err := fuzzseed.Write("FuzzDecryptPKCS8", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzDecryptPKCS8", seeds, false, "run go test ./keys -run TestWriteFuzzSeeds -update-seeds")
}
