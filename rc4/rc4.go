// Package rc4 implements the RC4 stream cipher (also known as ARCFOUR), with
// an API shaped like the standard library's crypto/rc4.
//
// RC4 IS CRYPTOGRAPHICALLY BROKEN. Do not use it in new protocols or to
// protect anything that matters. Its keystream is measurably biased:
//
//   - Fluhrer, Mantin and Shamir showed that the key-scheduling algorithm
//     leaks key bytes when related keys (for example key = IV || secret, as
//     in WEP) are used, and that the first keystream bytes are strongly
//     correlated with the key.
//   - Mantin and Shamir showed that the second output byte is zero with
//     probability about 2/256 instead of 1/256, enough to distinguish RC4
//     from random and to recover plaintext that is encrypted many times.
//   - Later work exploited these and many more long-term biases to recover
//     plaintext in practice: the "Bar mitzvah" attack on weak keys and the
//     RC4 NOMORE attack (2015), which recovers an HTTPS cookie in tens of
//     hours and breaks a WPA-TKIP network in about one.
//
// RFC 7465 prohibits RC4 cipher suites in TLS. Discarding the start of the
// keystream (see [RFC4345Discard] and [NewCipherDrop]) hides only the worst
// early-byte biases; it does not make RC4 safe.
//
// This package exists because the original course project that pkiboard
// grew out of (the CUHK IEMS5710 lab) used RC4. pkiboard keeps RC4 only as an
// explicitly opt-in, MAC-protected suite ("rc4-hmac-sha256": RC4 with a
// 256-bit key and RFC 4345's 1536-byte discard, authenticated with
// HMAC-SHA256) for teaching and for comparison with modern ciphers. The suite
// stays off unless the configuration enables it (board.allow_rc4).
//
// The implementation is pure Go. The permutation is kept in 32-bit words:
// byte entries (openssl's RC4_CHAR) measured at less than half the speed.
// Its inner loop loads the next state entry before the current swap is
// written back, and patches it with a rarely taken branch when the swap
// wrote it, so that no step waits for the previous step's stores; it runs
// in blocks of eight steps aligned on i, which address their eight entries
// with constant offsets and advance i once per block; and it XORs eight
// keystream bytes into the data at once. openssl's x86-64 code stores the
// swap first and loads the next entry after it, letting store-to-load
// forwarding deliver it: fewer instructions, but on the Intel Xeon this was
// tuned on that order ran at about half the speed, as if each load waited
// for the address of the store before it (the machine had no performance
// counters to confirm it). variants_test.go keeps the candidates, tested
// against every vector, for measuring them on other CPUs.
package rc4

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unsafe"
)

// RFC4345Discard is the number of initial keystream bytes that RFC 4345
// requires the "arcfour128" and "arcfour256" SSH ciphers to throw away
// before encrypting anything. Pass it to [NewCipherDrop] or [Cipher.Discard].
const RFC4345Discard = 1536

// A Cipher is an RC4 keystream generator initialised with a particular key.
// It keeps the evolving 256-entry permutation and the two indices i and j.
// A Cipher is not safe for concurrent use by multiple goroutines.
type Cipher struct {
	// s holds the permutation of 0..255. The entries are stored as uint32
	// rather than byte because word-sized loads and stores measured
	// noticeably faster in the keystream loop on amd64.
	s    [256]uint32
	i, j uint8
	// wiped records that Reset has been called, so that later use panics
	// instead of quietly producing an all-zero keystream (which would
	// "encrypt" by copying the plaintext).
	wiped bool
}

// KeySizeError is returned by [NewCipher] and [NewCipherDrop] when the key
// is shorter than 1 byte or longer than 256 bytes. Its value is the length
// of the rejected key.
type KeySizeError int

// Error returns a message of the form "rc4: invalid key size N".
func (k KeySizeError) Error() string {
	return "rc4: invalid key size " + strconv.Itoa(int(k))
}

// errNegativeDiscard is returned by NewCipherDrop for a negative count.
var errNegativeDiscard = errors.New("rc4: negative discard count")

// NewCipher runs the RC4 key schedule for key and returns a Cipher
// positioned at the first keystream byte. The key must be between 1 and 256
// bytes long, otherwise the error is a [KeySizeError]. The key slice is not
// retained.
func NewCipher(key []byte) (*Cipher, error) {
	n := len(key)
	if n < 1 || n > 256 {
		return nil, KeySizeError(n)
	}
	c := new(Cipher)
	for v := range c.s {
		c.s[v] = uint32(v)
	}
	// Key-scheduling algorithm: walk the table once, mixing in the key
	// bytes cyclically. kp is the key position and wraps without a modulo.
	var j uint8
	kp := 0
	for p := range c.s {
		t := c.s[p]
		j += uint8(t) + key[kp]
		c.s[p] = c.s[j]
		c.s[j] = t
		if kp++; kp == n {
			kp = 0
		}
	}
	return c, nil
}

// NewCipherDrop is [NewCipher] followed by [Cipher.Discard] of n bytes: the
// returned Cipher starts at keystream byte n. Use n = [RFC4345Discard] for the
// RFC 4345 "arcfour128"/"arcfour256" construction. A negative n is an error.
func NewCipherDrop(key []byte, n int) (*Cipher, error) {
	if n < 0 {
		return nil, errNegativeDiscard
	}
	c, err := NewCipher(key)
	if err != nil {
		return nil, err
	}
	c.Discard(n)
	return c, nil
}

// Reset overwrites the permutation and the indices with zeros so that the
// key schedule does not linger in memory, and makes the Cipher unusable:
// any later call to XORKeyStream or Discard panics.
//
// Reset cannot promise that no copy of the key material survives elsewhere:
// the caller's key slice, copies of the Cipher value, and memory that the
// runtime has moved or freed are out of its reach.
func (c *Cipher) Reset() {
	clear(c.s[:])
	c.i, c.j = 0, 0
	c.wiped = true
}

// Discard advances the keystream by n bytes without producing any output,
// exactly as if n bytes had been passed through XORKeyStream and the result
// thrown away. It panics if n is negative or if the Cipher has been Reset.
func (c *Cipher) Discard(n int) {
	if n < 0 {
		panic("rc4: negative discard count")
	}
	if c.wiped {
		panic("rc4: use of Cipher after Reset")
	}
	if n == 0 {
		return
	}
	// Same look-ahead scheme as xorKeyStream, without the output lookup.
	s := &c.s
	i, j := c.i, c.j
	i++
	x := s[i]
	for ; n > 0; n-- {
		j += uint8(x)
		nx := s[i+1]
		s[i], s[j] = s[j], x
		if j == i+1 {
			nx = x
		}
		i++
		x = nx
	}
	c.i, c.j = i-1, j
}

// XORKeyStream sets dst[k] = src[k] XOR the next keystream byte, for every
// k < len(src), and advances the keystream by len(src) bytes. Encryption and
// decryption are the same operation.
//
// dst must be at least as long as src; only its first len(src) bytes are
// written. dst and src must either be the very same memory (in-place use,
// dst[:len(src)] and src starting at the same address) or not overlap at
// all. XORKeyStream panics with "rc4: output smaller than input" or
// "rc4: invalid buffer overlap" when these rules are broken, and also panics
// if the Cipher has been Reset. A zero-length src is a no-op.
func (c *Cipher) XORKeyStream(dst, src []byte) {
	if len(src) == 0 {
		return
	}
	if len(dst) < len(src) {
		panic("rc4: output smaller than input")
	}
	dst = dst[:len(src)]
	if overlapsInexactly(dst, src) {
		panic("rc4: invalid buffer overlap")
	}
	if c.wiped {
		panic("rc4: use of Cipher after Reset")
	}
	c.xorKeyStream(dst, src)
}

// overlapsInexactly reports whether a and b share some memory without
// starting at the same address. Such partial overlap would make the cipher
// read bytes that it has already overwritten.
func overlapsInexactly(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa := uintptr(unsafe.Pointer(unsafe.SliceData(a)))
	pb := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if pa == pb {
		return false
	}
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}

// xorKeyStream is the hot loop. It requires len(dst) >= len(src) > 0.
//
// One RC4 step at index i is
//
//	x := s[i]; j += x; y := s[j]; s[i], s[j] = y, x; out = s[x+y]
//
// and the next step starts with the load s[i+1]. Written naively, that load
// sits behind the two stores of the current step in program order, and the
// CPU's memory disambiguation makes the whole chain wait on them. Here the
// next entry nx is read before the stores; the only way a store can change
// it is when j == i+1, in which case s[i+1] now holds x, so nx is patched
// with a (well predicted, rarely taken) branch.
//
// The main loop works on blocks of eight steps whose i is a multiple of 8,
// so that the eight entries s[i..i+7] are one [8]uint32 window w addressed
// with constant offsets: i is advanced once per block instead of once per
// byte, and the only entry outside the window, the next block's first,
// s[i+8], wraps with i's uint8 arithmetic. Single steps before the loop
// bring i to a multiple of 8, and single steps after it finish the tail.
// The eight keystream bytes of a block are XORed into the data with one
// 64-bit load and store.
func (c *Cipher) xorKeyStream(dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++ // i now names the entry that the next step swaps
	dst = dst[:len(src)]
	for len(src) > 0 && len(dst) > 0 && i%8 != 0 {
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[i], s[j] = y, x
		dst[0] = src[0] ^ uint8(s[uint8(x+y)])
		i++
		src, dst = src[1:], dst[1:]
	}

	x := s[i]
	var y, nx uint32
	// Stating both lengths in the loop condition lets the compiler drop
	// the bounds checks on src and dst from the loop body. The window's
	// conversion is checked once per block and never fails: i is a multiple
	// of 8, so int(i)+8 <= 256.
	for len(src) >= 8 && len(dst) >= 8 {
		w := (*[8]uint32)(s[i : int(i)+8])
		var ks uint64
		j += uint8(x)
		y = s[j]
		nx = w[1]
		s[j], w[0] = x, y
		if j == i+1 {
			nx = x
		}
		ks = uint64(s[uint8(x+y)])
		x = nx

		j += uint8(x)
		y = s[j]
		nx = w[2]
		s[j], w[1] = x, y
		if j == i+2 {
			nx = x
		}
		ks |= uint64(s[uint8(x+y)]) << 8
		x = nx

		j += uint8(x)
		y = s[j]
		nx = w[3]
		s[j], w[2] = x, y
		if j == i+3 {
			nx = x
		}
		ks |= uint64(s[uint8(x+y)]) << 16
		x = nx

		j += uint8(x)
		y = s[j]
		nx = w[4]
		s[j], w[3] = x, y
		if j == i+4 {
			nx = x
		}
		ks |= uint64(s[uint8(x+y)]) << 24
		x = nx

		j += uint8(x)
		y = s[j]
		nx = w[5]
		s[j], w[4] = x, y
		if j == i+5 {
			nx = x
		}
		ks |= uint64(s[uint8(x+y)]) << 32
		x = nx

		j += uint8(x)
		y = s[j]
		nx = w[6]
		s[j], w[5] = x, y
		if j == i+6 {
			nx = x
		}
		ks |= uint64(s[uint8(x+y)]) << 40
		x = nx

		j += uint8(x)
		y = s[j]
		nx = w[7]
		s[j], w[6] = x, y
		if j == i+7 {
			nx = x
		}
		ks |= uint64(s[uint8(x+y)]) << 48
		x = nx

		j += uint8(x)
		y = s[j]
		nx = s[i+8]
		s[j], w[7] = x, y
		if j == i+8 {
			nx = x
		}
		ks |= uint64(s[uint8(x+y)]) << 56
		x = nx

		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^ks)
		i += 8
		src, dst = src[8:], dst[8:]
	}

	dst = dst[:len(src)]
	for k := range src {
		x = s[i]
		j += uint8(x)
		y = s[j]
		s[i], s[j] = y, x
		dst[k] = src[k] ^ uint8(s[uint8(x+y)])
		i++
	}
	c.i, c.j = i-1, j
}
