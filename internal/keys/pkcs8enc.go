package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Encrypted PKCS#8 (RFC 5208 §6, EncryptedPrivateKeyInfo) with the PBES2
// scheme of RFC 8018 §6.2: PBKDF2 derives an AES key from the passphrase, and
// AES-CBC encrypts the DER PrivateKeyInfo. This is what `openssl genpkey
// -aes-256-cbc` and `openssl pkcs8 -topk8 -v2 aes-256-cbc` write.

// PBKDF2 iteration counts.
const (
	// Iterations is the count EncryptPKCS8 uses: OWASP's 2023 figure for
	// PBKDF2-HMAC-SHA256.
	Iterations = 600_000
	// MinIterations and MaxIterations bound the count DecryptPKCS8 accepts.
	// The minimum is RFC 8018 §4.2's "at least 1000"; the maximum keeps a
	// hostile file from tying up the CPU (ten million take a few seconds).
	MinIterations = 1000
	MaxIterations = 10_000_000
)

// Salt sizes: EncryptPKCS8 draws saltLen bytes; DecryptPKCS8 accepts
// minSaltLen..maxSaltLen (openssl writes 8 or 16).
const (
	saltLen    = 16
	minSaltLen = 8
	maxSaltLen = 64
)

// Object identifiers (RFC 8018 appendix C, NIST CSOR for AES).
var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES128CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// encryptedPrivateKeyInfo is RFC 5208 §6:
//
//	EncryptedPrivateKeyInfo ::= SEQUENCE {
//	    encryptionAlgorithm  AlgorithmIdentifier,
//	    encryptedData        OCTET STRING }
type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

// pbes2Params is RFC 8018 §A.4:
//
//	PBES2-params ::= SEQUENCE {
//	    keyDerivationFunc AlgorithmIdentifier {{PBES2-KDFs}},
//	    encryptionScheme  AlgorithmIdentifier {{PBES2-Encs}} }
type pbes2Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	EncryptionScheme  pkix.AlgorithmIdentifier
}

// pbkdf2Params is RFC 8018 §A.2:
//
//	PBKDF2-params ::= SEQUENCE {
//	    salt CHOICE { specified OCTET STRING, otherSource AlgorithmIdentifier },
//	    iterationCount INTEGER (1..MAX),
//	    keyLength INTEGER (1..MAX) OPTIONAL,
//	    prf AlgorithmIdentifier DEFAULT algid-hmacWithSHA1 }
//
// Only the "specified" salt is supported; an otherSource salt fails to decode.
type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	KeyLength      int                      `asn1:"optional"`
	PRF            pkix.AlgorithmIdentifier `asn1:"optional"`
}

// pbeParams says how one key is encrypted.
type pbeParams struct {
	iterations int
	prf        asn1.ObjectIdentifier // oidHMACWithSHA256 or oidHMACWithSHA1
	cipher     asn1.ObjectIdentifier // one of the AES-CBC OIDs
}

// aesKeyLen returns the key size of an AES-CBC OID, or 0 for another OID.
func aesKeyLen(oid asn1.ObjectIdentifier) int {
	switch {
	case oid.Equal(oidAES128CBC):
		return 16
	case oid.Equal(oidAES192CBC):
		return 24
	case oid.Equal(oidAES256CBC):
		return 32
	}
	return 0
}

// prfHash returns the hash of an HMAC PRF OID, or nil for another OID.
func prfHash(oid asn1.ObjectIdentifier) func() hash.Hash {
	switch {
	case oid.Equal(oidHMACWithSHA256):
		return sha256.New
	case oid.Equal(oidHMACWithSHA1):
		return sha1.New
	}
	return nil
}

// EncryptPKCS8 encrypts a PKCS#8 PrivateKeyInfo (DER) with passphrase and
// returns an EncryptedPrivateKeyInfo (DER), in a form `openssl pkey` reads:
// PBES2 with PBKDF2-HMAC-SHA256 (Iterations rounds, a random 16-byte salt)
// and AES-256-CBC (a random IV). The passphrase must not be empty.
func EncryptPKCS8(der, passphrase []byte) ([]byte, error) {
	return encryptPKCS8(rand.Reader, der, passphrase, pbeParams{
		iterations: Iterations, prf: oidHMACWithSHA256, cipher: oidAES256CBC,
	})
}

func encryptPKCS8(random io.Reader, der, passphrase []byte, p pbeParams) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("keys: encrypt private key: empty passphrase")
	}
	keyLen, h := aesKeyLen(p.cipher), prfHash(p.prf)
	if keyLen == 0 || h == nil {
		return nil, errors.New("keys: encrypt private key: unsupported cipher or PRF")
	}
	salt := make([]byte, saltLen)
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(random, salt); err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: read random salt: %w", err)
	}
	if _, err := io.ReadFull(random, iv); err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: read random IV: %w", err)
	}
	key, err := pbkdf2.Key(h, string(passphrase), salt, p.iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: derive key: %w", err)
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: %w", err)
	}

	// PKCS#7 padding (RFC 8018 §6.1.1 step 4): 1..16 bytes, each the count.
	pad := aes.BlockSize - len(der)%aes.BlockSize
	data := make([]byte, len(der)+pad)
	copy(data, der)
	for i := len(der); i < len(data); i++ {
		data[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)

	// The PRF is written with NULL parameters, as openssl writes it; the
	// default (HMAC-SHA1) is omitted, as DER requires for DEFAULT values.
	kdf := pbkdf2Params{Salt: salt, IterationCount: p.iterations}
	if !p.prf.Equal(oidHMACWithSHA1) {
		kdf.PRF = pkix.AlgorithmIdentifier{Algorithm: p.prf, Parameters: asn1.NullRawValue}
	}
	kdfDER, err := asn1.Marshal(kdf)
	if err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: encode PBKDF2 parameters: %w", err)
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: encode IV: %w", err)
	}
	paramsDER, err := asn1.Marshal(pbes2Params{
		KeyDerivationFunc: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: kdfDER}},
		EncryptionScheme:  pkix.AlgorithmIdentifier{Algorithm: p.cipher, Parameters: asn1.RawValue{FullBytes: ivDER}},
	})
	if err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: encode PBES2 parameters: %w", err)
	}
	out, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm:     pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: paramsDER}},
		EncryptedData: data,
	})
	if err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: encode: %w", err)
	}
	return out, nil
}

// DecryptPKCS8 decrypts an EncryptedPrivateKeyInfo (DER) with passphrase and
// returns the PrivateKeyInfo (DER). It reads PBES2 with PBKDF2 (HMAC-SHA256
// or HMAC-SHA1, MinIterations..MaxIterations rounds) and AES-128, -192 or
// -256 in CBC mode: what EncryptPKCS8 and openssl's current and older
// defaults write. A wrong passphrase returns an error wrapping
// ErrPassphrase, and nothing in it says which check failed.
func DecryptPKCS8(der, passphrase []byte) ([]byte, error) {
	return decryptPKCS8(der, passphrase, MaxIterations)
}

// decryptPKCS8 is DecryptPKCS8 with an upper bound on the iteration count
// (the fuzz target uses a small one to keep each run fast).
func decryptPKCS8(der, passphrase []byte, maxIterations int) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if err := unmarshalDER(der, &info); err != nil {
		return nil, fmt.Errorf("keys: decode encrypted private key: %w", err)
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("keys: encrypted private key uses scheme %s; only PBES2 (openssl's -v2) is supported", info.Algorithm.Algorithm)
	}
	var params pbes2Params
	if err := unmarshalDER(info.Algorithm.Parameters.FullBytes, &params); err != nil {
		return nil, fmt.Errorf("keys: decode PBES2 parameters: %w", err)
	}

	if !params.KeyDerivationFunc.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("keys: encrypted private key uses key derivation %s; only PBKDF2 is supported", params.KeyDerivationFunc.Algorithm)
	}
	var kdf pbkdf2Params
	if err := unmarshalDER(params.KeyDerivationFunc.Parameters.FullBytes, &kdf); err != nil {
		return nil, fmt.Errorf("keys: decode PBKDF2 parameters: %w", err)
	}
	if n := len(kdf.Salt); n < minSaltLen || n > maxSaltLen {
		return nil, fmt.Errorf("keys: PBKDF2 salt of %d bytes is outside %d..%d", n, minSaltLen, maxSaltLen)
	}
	if kdf.IterationCount < MinIterations || kdf.IterationCount > maxIterations {
		return nil, fmt.Errorf("keys: PBKDF2 iteration count %d is outside %d..%d", kdf.IterationCount, MinIterations, maxIterations)
	}
	prf := oidHMACWithSHA1 // the DEFAULT of PBKDF2-params
	if len(kdf.PRF.Algorithm) > 0 {
		prf = kdf.PRF.Algorithm
		if p := kdf.PRF.Parameters; len(p.FullBytes) != 0 && !(p.Tag == asn1.TagNull && p.Class == asn1.ClassUniversal && len(p.Bytes) == 0) {
			return nil, errors.New("keys: PBKDF2 PRF parameters must be absent or NULL")
		}
	}
	h := prfHash(prf)
	if h == nil {
		return nil, fmt.Errorf("keys: PBKDF2 PRF %s is not supported (use hmacWithSHA256 or hmacWithSHA1)", prf)
	}

	keyLen := aesKeyLen(params.EncryptionScheme.Algorithm)
	if keyLen == 0 {
		return nil, fmt.Errorf("keys: encrypted private key uses cipher %s; only AES-CBC is supported", params.EncryptionScheme.Algorithm)
	}
	if kdf.KeyLength != 0 && kdf.KeyLength != keyLen {
		return nil, fmt.Errorf("keys: PBKDF2 key length %d does not fit the cipher's %d", kdf.KeyLength, keyLen)
	}
	var iv []byte
	if err := unmarshalDER(params.EncryptionScheme.Parameters.FullBytes, &iv); err != nil {
		return nil, fmt.Errorf("keys: decode AES-CBC IV: %w", err)
	}
	if len(iv) != aes.BlockSize {
		return nil, fmt.Errorf("keys: AES-CBC IV of %d bytes, want %d", len(iv), aes.BlockSize)
	}
	data := info.EncryptedData
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("keys: encrypted data of %d bytes is not a whole number of AES blocks", len(data))
	}

	key, err := pbkdf2.Key(h, string(passphrase), kdf.Salt, kdf.IterationCount, keyLen)
	if err != nil {
		return nil, fmt.Errorf("keys: derive key: %w", err)
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, data)

	// A wrong key turns the last block into noise; the padding then fails to
	// check, except by chance (about 1 in 256), in which case the plaintext
	// is not one DER SEQUENCE. Both failures give the same error.
	n, ok := unpad(plain)
	if ok == 1 {
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(plain[:n], &seq); err != nil || len(rest) != 0 ||
			seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			ok = 0
		}
	}
	if ok != 1 {
		clear(plain)
		return nil, fmt.Errorf("%w: the key does not decrypt with it", ErrPassphrase)
	}
	out := plain[:n:n]
	clear(plain[n:])
	return out, nil
}

// unpad checks PKCS#7 padding in time independent of the padding's value and
// returns the length without it and 1, or 0 and 0 when it is not valid.
// len(b) must be a positive multiple of the block size.
func unpad(b []byte) (n int, ok int) {
	last := b[len(b)-1]
	pad := int(last)
	ok = subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	// Every one of the last BlockSize bytes that lies in the padding must
	// equal pad.
	tail := b[len(b)-aes.BlockSize:]
	for i := range aes.BlockSize {
		inPad := subtle.ConstantTimeLessOrEq(aes.BlockSize-i, pad)
		same := subtle.ConstantTimeByteEq(tail[i], last)
		ok &= subtle.ConstantTimeSelect(inPad, same, 1)
	}
	return subtle.ConstantTimeSelect(ok, len(b)-pad, 0), ok
}

// unmarshalDER decodes exactly one DER value into v, with nothing after it.
func unmarshalDER(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d bytes of trailing data", len(rest))
	}
	return nil
}
