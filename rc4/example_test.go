package rc4_test

import (
	"encoding/hex"
	"fmt"

	"pkiboard/rc4"
)

// Example encrypts and decrypts a message with the RFC 4345 "arcfour128"
// construction: a 128-bit key and the first 1536 keystream bytes discarded.
// RC4 is broken; pkiboard only uses it inside the opt-in, MAC-protected
// rc4-hmac-sha256 suite.
func Example() {
	key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f") // use a random key in practice

	enc, err := rc4.NewCipherDrop(key, rc4.RFC4345Discard)
	if err != nil {
		panic(err)
	}
	msg := []byte("hello, IEMS5710")
	ct := make([]byte, len(msg))
	enc.XORKeyStream(ct, msg)
	fmt.Printf("ciphertext: %x\n", ct)

	// Decryption is the same operation with a cipher in the same position.
	dec, err := rc4.NewCipherDrop(key, rc4.RFC4345Discard)
	if err != nil {
		panic(err)
	}
	dec.XORKeyStream(ct, ct) // in place
	fmt.Printf("plaintext:  %s\n", ct)

	// Wipe the key schedules when done.
	enc.Reset()
	dec.Reset()
	// Output:
	// ciphertext: db80c08e1aac56a3a6f1e10b6e6c89
	// plaintext:  hello, IEMS5710
}
