package rc4

// Candidate inner loops for XORKeyStream, kept so that the choice made in
// rc4.go can be re-measured on another CPU:
//
//	go test -run '^$' -bench Variants -count 10 ./rc4 | benchstat -col /variant -
//
// Every variant is checked against the RFC 6229 vectors and crypto/rc4 by
// TestVariants, at every chunk size, so a variant that is wrong cannot be
// measured as fast.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// keystreamer is the part of the Cipher API the variants share.
type keystreamer interface {
	XORKeyStream(dst, src []byte)
}

// wordLoop is a variant inner loop over the package's own state; it
// requires len(dst) >= len(src).
type wordLoop func(c *Cipher, dst, src []byte)

type wordVariant struct {
	c    *Cipher
	loop wordLoop
}

func (w wordVariant) XORKeyStream(dst, src []byte) { w.loop(w.c, dst[:len(src)], src) }

var variants = []struct {
	name string
	new  func(key []byte) (keystreamer, error)
}{
	{"kept", func(key []byte) (keystreamer, error) { return NewCipher(key) }},
	{"patch8", word(xorPatch8)},
	{"order8", word(xorOrder8)},
	{"block8", word(xorBlock8)},
	{"ahead2", word(xorAhead2)},
	{"ahead3", word(xorAhead3)},
	{"block8bytes", word(xorBlock8Bytes)},
	{"block16", word(xorBlock16)},
	{"char8", newCharCipher},
}

func word(loop wordLoop) func(key []byte) (keystreamer, error) {
	return func(key []byte) (keystreamer, error) {
		c, err := NewCipher(key)
		if err != nil {
			return nil, err
		}
		return wordVariant{c, loop}, nil
	}
}

// xorPatch8 is the loop as it was before issue 17: the next entry is
// loaded before the current swap is stored and patched by a branch when
// j == i+1; eight keystream bytes are OR-ed into one 64-bit XOR.
func xorPatch8(c *Cipher, dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++ // i now names the entry that the next step swaps
	x := s[i]
	var y, nx uint32

	// Stating both lengths in the loop condition lets the compiler drop
	// every bounds check from the loop body.
	for len(src) >= 8 && len(dst) >= 8 {
		var ks uint64

		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		ks = uint64(uint8(s[uint8(x+y)]))
		i++
		x = nx

		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		ks |= uint64(uint8(s[uint8(x+y)])) << 8
		i++
		x = nx

		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		ks |= uint64(uint8(s[uint8(x+y)])) << 16
		i++
		x = nx

		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		ks |= uint64(uint8(s[uint8(x+y)])) << 24
		i++
		x = nx

		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		ks |= uint64(uint8(s[uint8(x+y)])) << 32
		i++
		x = nx

		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		ks |= uint64(uint8(s[uint8(x+y)])) << 40
		i++
		x = nx

		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		ks |= uint64(uint8(s[uint8(x+y)])) << 48
		i++
		x = nx

		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		ks |= uint64(uint8(s[uint8(x+y)])) << 56
		i++
		x = nx

		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^ks)
		src = src[8:]
		dst = dst[8:]
	}

	dst = dst[:len(src)]
	for k := range src {
		j += uint8(x)
		y = s[j]
		nx = s[i+1]
		s[i], s[j] = y, x
		if j == i+1 {
			nx = x
		}
		dst[k] = src[k] ^ uint8(s[uint8(x+y)])
		i++
		x = nx
	}

	c.i, c.j = i-1, j
}

// xorOrder8 stores s[j] = x before it loads the next entry s[i+1], and
// stores s[i] = y after: when j == i+1 the load sees x through
// store-to-load forwarding, so no branch is needed (openssl's RC4_INT
// order).
func xorOrder8(c *Cipher, dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++
	x := s[i]
	var y, nx uint32
	for len(src) >= 8 && len(dst) >= 8 {
		var ks uint64
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks = uint64(s[uint8(x+y)])
		i++
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[uint8(x+y)]) << 8
		i++
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[uint8(x+y)]) << 16
		i++
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[uint8(x+y)]) << 24
		i++
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[uint8(x+y)]) << 32
		i++
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[uint8(x+y)]) << 40
		i++
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[uint8(x+y)]) << 48
		i++
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[uint8(x+y)]) << 56
		i++
		x = nx
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^ks)
		src, dst = src[8:], dst[8:]
	}
	dst = dst[:len(src)]
	for k := range src {
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		dst[k] = src[k] ^ uint8(s[uint8(x+y)])
		i++
		x = nx
	}
	c.i, c.j = i-1, j
}

// xorBlock8 is xorOrder8 with i aligned to a multiple of 8 first, so that
// eight steps address one [8]uint32 window of the state with constant
// offsets and i is not incremented per byte.
func xorBlock8(c *Cipher, dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++
	n := 0
	for ; n < len(src) && i&7 != 0; n++ {
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[j] = x
		s[i] = y
		dst[n] = src[n] ^ uint8(s[uint8(x+y)])
		i++
	}
	src, dst = src[n:], dst[:len(src)][n:]
	x := s[i]
	var y, nx uint32
	for len(src) >= 8 && len(dst) >= 8 {
		w := (*[8]uint32)(s[i : int(i)+8])
		var ks uint64
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[1]
		w[0] = y
		ks = uint64(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[2]
		w[1] = y
		ks |= uint64(s[uint8(x+y)]) << 8
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[3]
		w[2] = y
		ks |= uint64(s[uint8(x+y)]) << 16
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[4]
		w[3] = y
		ks |= uint64(s[uint8(x+y)]) << 24
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[5]
		w[4] = y
		ks |= uint64(s[uint8(x+y)]) << 32
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[6]
		w[5] = y
		ks |= uint64(s[uint8(x+y)]) << 40
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[7]
		w[6] = y
		ks |= uint64(s[uint8(x+y)]) << 48
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+8]
		w[7] = y
		ks |= uint64(s[uint8(x+y)]) << 56
		x = nx
		i += 8
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^ks)
		src, dst = src[8:], dst[8:]
	}
	dst = dst[:len(src)]
	for k := range src {
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		dst[k] = src[k] ^ uint8(s[uint8(x+y)])
		i++
		x = nx
	}
	c.i, c.j = i-1, j
}

// xorBlock8Bytes is xorBlock8 with each keystream byte XORed into dst on
// its own instead of being gathered into a 64-bit word.
func xorBlock8Bytes(c *Cipher, dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++
	n := 0
	for ; n < len(src) && i&7 != 0; n++ {
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[j] = x
		s[i] = y
		dst[n] = src[n] ^ uint8(s[uint8(x+y)])
		i++
	}
	src, dst = src[n:], dst[:len(src)][n:]
	x := s[i]
	var y, nx uint32
	for len(src) >= 8 && len(dst) >= 8 {
		w := (*[8]uint32)(s[i : int(i)+8])
		in, out := (*[8]byte)(src), (*[8]byte)(dst)
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[1]
		w[0] = y
		out[0] = in[0] ^ uint8(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[2]
		w[1] = y
		out[1] = in[1] ^ uint8(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[3]
		w[2] = y
		out[2] = in[2] ^ uint8(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[4]
		w[3] = y
		out[3] = in[3] ^ uint8(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[5]
		w[4] = y
		out[4] = in[4] ^ uint8(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[6]
		w[5] = y
		out[5] = in[5] ^ uint8(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[7]
		w[6] = y
		out[6] = in[6] ^ uint8(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+8]
		w[7] = y
		out[7] = in[7] ^ uint8(s[uint8(x+y)])
		x = nx
		i += 8
		src, dst = src[8:], dst[8:]
	}
	dst = dst[:len(src)]
	for k := range src {
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		dst[k] = src[k] ^ uint8(s[uint8(x+y)])
		i++
		x = nx
	}
	c.i, c.j = i-1, j
}

// xorBlock16 is xorBlock8 over sixteen steps and two 64-bit XORs.
func xorBlock16(c *Cipher, dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++
	n := 0
	for ; n < len(src) && i&15 != 0; n++ {
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[j] = x
		s[i] = y
		dst[n] = src[n] ^ uint8(s[uint8(x+y)])
		i++
	}
	src, dst = src[n:], dst[:len(src)][n:]
	x := s[i]
	var y, nx uint32
	for len(src) >= 16 && len(dst) >= 16 {
		w := (*[16]uint32)(s[i : int(i)+16])
		var lo, hi uint64
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[1]
		w[0] = y
		lo = uint64(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[2]
		w[1] = y
		lo |= uint64(s[uint8(x+y)]) << 8
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[3]
		w[2] = y
		lo |= uint64(s[uint8(x+y)]) << 16
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[4]
		w[3] = y
		lo |= uint64(s[uint8(x+y)]) << 24
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[5]
		w[4] = y
		lo |= uint64(s[uint8(x+y)]) << 32
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[6]
		w[5] = y
		lo |= uint64(s[uint8(x+y)]) << 40
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[7]
		w[6] = y
		lo |= uint64(s[uint8(x+y)]) << 48
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[8]
		w[7] = y
		lo |= uint64(s[uint8(x+y)]) << 56
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[9]
		w[8] = y
		hi = uint64(s[uint8(x+y)])
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[10]
		w[9] = y
		hi |= uint64(s[uint8(x+y)]) << 8
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[11]
		w[10] = y
		hi |= uint64(s[uint8(x+y)]) << 16
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[12]
		w[11] = y
		hi |= uint64(s[uint8(x+y)]) << 24
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[13]
		w[12] = y
		hi |= uint64(s[uint8(x+y)]) << 32
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[14]
		w[13] = y
		hi |= uint64(s[uint8(x+y)]) << 40
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = w[15]
		w[14] = y
		hi |= uint64(s[uint8(x+y)]) << 48
		x = nx
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+16]
		w[15] = y
		hi |= uint64(s[uint8(x+y)]) << 56
		x = nx
		i += 16
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^lo)
		binary.LittleEndian.PutUint64(dst[8:], binary.LittleEndian.Uint64(src[8:])^hi)
		src, dst = src[16:], dst[16:]
	}
	dst = dst[:len(src)]
	for k := range src {
		j += uint8(x)
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		dst[k] = src[k] ^ uint8(s[uint8(x+y)])
		i++
		x = nx
	}
	c.i, c.j = i-1, j
}

// charCipher keeps the permutation in bytes (openssl's RC4_CHAR): a quarter
// of the cache lines, at the price of byte-sized loads and stores.
type charCipher struct {
	s    [256]uint8
	i, j uint8
}

func newCharCipher(key []byte) (keystreamer, error) {
	w, err := NewCipher(key)
	if err != nil {
		return nil, err
	}
	c := new(charCipher)
	for n, v := range w.s {
		c.s[n] = uint8(v)
	}
	return c, nil
}

// XORKeyStream is xorOrder8 over the byte state.
func (c *charCipher) XORKeyStream(dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++
	x := s[i]
	var y, nx uint8
	for len(src) >= 8 && len(dst) >= 8 {
		var ks uint64
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks = uint64(s[x+y])
		i++
		x = nx
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[x+y]) << 8
		i++
		x = nx
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[x+y]) << 16
		i++
		x = nx
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[x+y]) << 24
		i++
		x = nx
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[x+y]) << 32
		i++
		x = nx
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[x+y]) << 40
		i++
		x = nx
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[x+y]) << 48
		i++
		x = nx
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		ks |= uint64(s[x+y]) << 56
		i++
		x = nx
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^ks)
		src, dst = src[8:], dst[8:]
	}
	dst = dst[:len(src)]
	for k := range src {
		j += x
		y = s[j]
		s[j] = x
		nx = s[i+1]
		s[i] = y
		dst[k] = src[k] ^ s[x+y]
		i++
		x = nx
	}
	c.i, c.j = i-1, j
}

// xorAhead2 is the kept loop with the entries of the next 2 steps loaded
// before the current swap is stored: one unsigned range check per step
// finds the rare swap that wrote one of them, and a switch patches it.
func xorAhead2(c *Cipher, dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++
	n := 0
	for ; n < len(src) && i&7 != 0; n++ {
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[j] = x
		s[i] = y
		dst[n] = src[n] ^ uint8(s[uint8(x+y)])
		i++
	}
	src, dst = src[n:], dst[:len(src)][n:]
	if len(src) >= 8 && len(dst) >= 8 {
		p0 := s[i]
		p1 := s[i+1]
		var p2, y uint32
		for len(src) >= 8 && len(dst) >= 8 {
			w := (*[8]uint32)(s[i : int(i)+8])
			var ks uint64
			j += uint8(p0)
			y = s[j]
			p2 = w[2]
			s[j] = p0
			w[0] = y
			if t := j - (i + 1); t < 2 {
				switch t {
				case 0:
					p1 = p0
				case 1:
					p2 = p0
				}
			}
			ks = uint64(s[uint8(p0+y)])
			j += uint8(p1)
			y = s[j]
			p0 = w[3]
			s[j] = p1
			w[1] = y
			if t := j - (i + 2); t < 2 {
				switch t {
				case 0:
					p2 = p1
				case 1:
					p0 = p1
				}
			}
			ks |= uint64(s[uint8(p1+y)]) << 8
			j += uint8(p2)
			y = s[j]
			p1 = w[4]
			s[j] = p2
			w[2] = y
			if t := j - (i + 3); t < 2 {
				switch t {
				case 0:
					p0 = p2
				case 1:
					p1 = p2
				}
			}
			ks |= uint64(s[uint8(p2+y)]) << 16
			j += uint8(p0)
			y = s[j]
			p2 = w[5]
			s[j] = p0
			w[3] = y
			if t := j - (i + 4); t < 2 {
				switch t {
				case 0:
					p1 = p0
				case 1:
					p2 = p0
				}
			}
			ks |= uint64(s[uint8(p0+y)]) << 24
			j += uint8(p1)
			y = s[j]
			p0 = w[6]
			s[j] = p1
			w[4] = y
			if t := j - (i + 5); t < 2 {
				switch t {
				case 0:
					p2 = p1
				case 1:
					p0 = p1
				}
			}
			ks |= uint64(s[uint8(p1+y)]) << 32
			j += uint8(p2)
			y = s[j]
			p1 = w[7]
			s[j] = p2
			w[5] = y
			if t := j - (i + 6); t < 2 {
				switch t {
				case 0:
					p0 = p2
				case 1:
					p1 = p2
				}
			}
			ks |= uint64(s[uint8(p2+y)]) << 40
			j += uint8(p0)
			y = s[j]
			p2 = s[i+8]
			s[j] = p0
			w[6] = y
			if t := j - (i + 7); t < 2 {
				switch t {
				case 0:
					p1 = p0
				case 1:
					p2 = p0
				}
			}
			ks |= uint64(s[uint8(p0+y)]) << 48
			j += uint8(p1)
			y = s[j]
			p0 = s[i+9]
			s[j] = p1
			w[7] = y
			if t := j - (i + 8); t < 2 {
				switch t {
				case 0:
					p2 = p1
				case 1:
					p0 = p1
				}
			}
			ks |= uint64(s[uint8(p1+y)]) << 56
			i += 8
			binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^ks)
			src, dst = src[8:], dst[8:]
			p0, p1, p2 = p2, p0, p1
		}
	}
	dst = dst[:len(src)]
	for k := range src {
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[j] = x
		s[i] = y
		dst[k] = src[k] ^ uint8(s[uint8(x+y)])
		i++
	}
	c.i, c.j = i-1, j
}

// xorAhead3 is the kept loop with the entries of the next 3 steps loaded
// before the current swap is stored: one unsigned range check per step
// finds the rare swap that wrote one of them, and a switch patches it.
func xorAhead3(c *Cipher, dst, src []byte) {
	s := &c.s
	i, j := c.i, c.j
	i++
	n := 0
	for ; n < len(src) && i&7 != 0; n++ {
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[j] = x
		s[i] = y
		dst[n] = src[n] ^ uint8(s[uint8(x+y)])
		i++
	}
	src, dst = src[n:], dst[:len(src)][n:]
	if len(src) >= 8 && len(dst) >= 8 {
		p0 := s[i]
		p1 := s[i+1]
		p2 := s[i+2]
		var p3, y uint32
		for len(src) >= 8 && len(dst) >= 8 {
			w := (*[8]uint32)(s[i : int(i)+8])
			var ks uint64
			j += uint8(p0)
			y = s[j]
			p3 = w[3]
			s[j] = p0
			w[0] = y
			if t := j - (i + 1); t < 3 {
				switch t {
				case 0:
					p1 = p0
				case 1:
					p2 = p0
				case 2:
					p3 = p0
				}
			}
			ks = uint64(s[uint8(p0+y)])
			j += uint8(p1)
			y = s[j]
			p0 = w[4]
			s[j] = p1
			w[1] = y
			if t := j - (i + 2); t < 3 {
				switch t {
				case 0:
					p2 = p1
				case 1:
					p3 = p1
				case 2:
					p0 = p1
				}
			}
			ks |= uint64(s[uint8(p1+y)]) << 8
			j += uint8(p2)
			y = s[j]
			p1 = w[5]
			s[j] = p2
			w[2] = y
			if t := j - (i + 3); t < 3 {
				switch t {
				case 0:
					p3 = p2
				case 1:
					p0 = p2
				case 2:
					p1 = p2
				}
			}
			ks |= uint64(s[uint8(p2+y)]) << 16
			j += uint8(p3)
			y = s[j]
			p2 = w[6]
			s[j] = p3
			w[3] = y
			if t := j - (i + 4); t < 3 {
				switch t {
				case 0:
					p0 = p3
				case 1:
					p1 = p3
				case 2:
					p2 = p3
				}
			}
			ks |= uint64(s[uint8(p3+y)]) << 24
			j += uint8(p0)
			y = s[j]
			p3 = w[7]
			s[j] = p0
			w[4] = y
			if t := j - (i + 5); t < 3 {
				switch t {
				case 0:
					p1 = p0
				case 1:
					p2 = p0
				case 2:
					p3 = p0
				}
			}
			ks |= uint64(s[uint8(p0+y)]) << 32
			j += uint8(p1)
			y = s[j]
			p0 = s[i+8]
			s[j] = p1
			w[5] = y
			if t := j - (i + 6); t < 3 {
				switch t {
				case 0:
					p2 = p1
				case 1:
					p3 = p1
				case 2:
					p0 = p1
				}
			}
			ks |= uint64(s[uint8(p1+y)]) << 40
			j += uint8(p2)
			y = s[j]
			p1 = s[i+9]
			s[j] = p2
			w[6] = y
			if t := j - (i + 7); t < 3 {
				switch t {
				case 0:
					p3 = p2
				case 1:
					p0 = p2
				case 2:
					p1 = p2
				}
			}
			ks |= uint64(s[uint8(p2+y)]) << 48
			j += uint8(p3)
			y = s[j]
			p2 = s[i+10]
			s[j] = p3
			w[7] = y
			if t := j - (i + 8); t < 3 {
				switch t {
				case 0:
					p0 = p3
				case 1:
					p1 = p3
				case 2:
					p2 = p3
				}
			}
			ks |= uint64(s[uint8(p3+y)]) << 56
			i += 8
			binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^ks)
			src, dst = src[8:], dst[8:]
		}
	}
	dst = dst[:len(src)]
	for k := range src {
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[j] = x
		s[i] = y
		dst[k] = src[k] ^ uint8(s[uint8(x+y)])
		i++
	}
	c.i, c.j = i-1, j
}

// TestVariants checks every variant against the RFC 6229 vectors at every
// chunk size, and against crypto/rc4 on random keys, split lengths and in
// place.
func TestVariants(t *testing.T) {
	keys := loadRFC6229(t)
	chunkSizes := []int{1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 255, 256, 1000, 4112}
	const streamLen = 4096 + 16
	r := newRand(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			for _, k := range keys {
				for _, chunk := range chunkSizes {
					c, err := v.new(k.key)
					if err != nil {
						t.Fatalf("new: %v", err)
					}
					stream := make([]byte, streamLen)
					for off := 0; off < streamLen; off += chunk {
						end := min(off+chunk, streamLen)
						c.XORKeyStream(stream[off:end], stream[off:end])
					}
					for _, vec := range k.vectors {
						if got := stream[vec.offset : vec.offset+16]; !bytes.Equal(got, vec.want) {
							t.Fatalf("key %x chunk %d offset %d: got %x want %x", k.key, chunk, vec.offset, got, vec.want)
						}
					}
				}
			}
			for keyLen := 1; keyLen <= 256; keyLen += 17 {
				key := randBytes(r, keyLen)
				ours, err := v.new(key)
				if err != nil {
					t.Fatalf("new: %v", err)
				}
				ref := mustStd(t, key)
				for call, n := range []int{0, 1, 5, 7, 8, 9, 15, 16, 17, r.IntN(64), r.IntN(4096), r.IntN(70000)} {
					src := randBytes(r, n)
					got, want := make([]byte, n), make([]byte, n)
					if call%2 == 0 {
						ours.XORKeyStream(got, src)
					} else {
						copy(got, src)
						ours.XORKeyStream(got, got)
					}
					ref.XORKeyStream(want, src)
					if !bytes.Equal(got, want) {
						t.Fatalf("keylen %d call %d (len %d): got %x want %x", keyLen, call, n, head(got), head(want))
					}
				}
			}
		})
	}
}

// BenchmarkVariants measures every variant on the sizes of
// BenchmarkXORKeyStream. The variants run one after the other for each
// size, so that a slow moment of a shared machine hurts them alike.
func BenchmarkVariants(b *testing.B) {
	for _, sz := range benchSizes {
		for _, v := range variants {
			b.Run(fmt.Sprintf("size=%s/variant=%s", sz.name, v.name), func(b *testing.B) {
				c, err := v.new(benchKey)
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, sz.n)
				b.SetBytes(int64(sz.n))
				for b.Loop() {
					c.XORKeyStream(buf, buf)
				}
			})
		}
	}
}
