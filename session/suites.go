package session

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"pkiboard/rc4"
)

// Cipher suite ids (PROTOCOL.md §5.1), as ClientHello.suites offers them and
// ServerHello.suite names the board's choice.
const (
	// SuiteAES256CTRHMACSHA256 is AES-256 in CTR mode, then HMAC-SHA256 over
	// the ciphertext: the suite the board always allows.
	SuiteAES256CTRHMACSHA256 uint16 = 0x0001

	// SuiteRC4HMACSHA256 is RC4 with the first 1536 bytes of keystream
	// dropped (RFC 4345), then HMAC-SHA256 over the ciphertext. RC4 is
	// broken; the board chooses this suite only with ServerConfig.AllowRC4.
	SuiteRC4HMACSHA256 uint16 = 0x0002

	// SuiteAES256GCM is AES-256-GCM, an AEAD: each record sealed on its own
	// with a nonce made from the sequence number (PROTOCOL.md §5.3). The
	// default: first in preference, always allowed.
	SuiteAES256GCM uint16 = 0x0003
)

// cipherSuite is one row of the suite table.
type cipherSuite struct {
	id   uint16
	name string // as PROTOCOL.md §5.1 and the configuration write it

	// allowedByDefault is false for a suite the board chooses only when
	// ServerConfig.AllowRC4 is set.
	allowedByDefault bool

	// cipher returns the stream cipher of one direction's records from its
	// cipher key and IV (PROTOCOL.md §5.2), for a suite that MACs with
	// HMAC-SHA256; nil for an AEAD suite.
	cipher func(key, iv []byte) (cipher.Stream, error)

	// aead returns the AEAD of one direction's records from its key, for an
	// AEAD suite; nil for a stream suite.
	aead func(key []byte) (cipher.AEAD, error)
}

// cipherSuites are the suites this package implements, in the order a student
// that offers every one prefers them.
var cipherSuites = []*cipherSuite{
	{SuiteAES256GCM, "aes-256-gcm", true, nil, aeadAES256GCM},
	{SuiteAES256CTRHMACSHA256, "aes-256-ctr-hmac-sha256", true, cipherAES256CTR, nil},
	{SuiteRC4HMACSHA256, "rc4-hmac-sha256", false, cipherRC4, nil},
}

// aeadAES256GCM is AES-256-GCM keyed with key, with the standard 12-byte
// nonce and 16-byte tag.
func aeadAES256GCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// cipherAES256CTR is AES-256-CTR keyed with key, starting from the counter
// block iv.
func cipherAES256CTR(key, iv []byte) (cipher.Stream, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewCTR(block, iv), nil
}

// cipherRC4 is RC4 keyed with key, its first rc4.RFC4345Discard bytes of
// keystream dropped. RC4 takes no IV.
func cipherRC4(key, _ []byte) (cipher.Stream, error) {
	c, err := rc4.NewCipherDrop(key, rc4.RFC4345Discard)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// suiteByID returns the row of the suite id, or nil if this package does not
// implement it.
func suiteByID(id uint16) *cipherSuite {
	for _, s := range cipherSuites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// Suites returns the ids of every cipher suite this package implements, in
// order of preference.
func Suites() []uint16 {
	ids := make([]uint16, len(cipherSuites))
	for i, s := range cipherSuites {
		ids[i] = s.id
	}
	return ids
}

// SuiteName returns the name of a cipher suite as PROTOCOL.md §5.1 lists it,
// such as "aes-256-gcm", or "0x0004" for an unknown id.
func SuiteName(id uint16) string {
	if s := suiteByID(id); s != nil {
		return s.name
	}
	return fmt.Sprintf("0x%04x", id)
}

// SuiteByName returns the id of the cipher suite called name (see SuiteName).
func SuiteByName(name string) (uint16, bool) {
	for _, s := range cipherSuites {
		if s.name == name {
			return s.id, true
		}
	}
	return 0, false
}
