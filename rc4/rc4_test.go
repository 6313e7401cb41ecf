package rc4

import (
	"bufio"
	"bytes"

	// crypto/rc4 is the reference implementation these tests compare
	// against. (Only its Reset method is marked deprecated; it is not used.)
	stdrc4 "crypto/rc4"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// RFC 6229 fixture

const rfc6229Path = "testdata/rfc6229.txt"

// rfc6229Offsets lists the keystream offsets that RFC 6229 publishes for
// every key.
var rfc6229Offsets = []int{
	0, 16, 240, 256, 496, 512, 752, 768, 1008, 1024,
	1520, 1536, 2032, 2048, 3056, 3072, 4080, 4096,
}

// rfc6229KeyBits lists the key lengths of each of the two RFC 6229 key sets.
var rfc6229KeyBits = []int{40, 56, 64, 80, 128, 192, 256}

// rfc6229Want is the number of vectors the fixture must hold:
// 2 key sets x 7 key lengths x 18 offsets.
const rfc6229Want = 2 * 7 * 18

type rfcVector struct {
	key    []byte
	offset int
	want   []byte // 16 keystream bytes at offset
	line   int
}

type rfcKey struct {
	key     []byte
	vectors []rfcVector
}

// loadRFC6229 parses testdata/rfc6229.txt. See the header of that file for
// the format.
func loadRFC6229(t testing.TB) []rfcKey {
	t.Helper()
	f, err := os.Open(rfc6229Path)
	if err != nil {
		t.Fatalf("RFC 6229 fixture: %v", err)
	}
	defer f.Close()

	var (
		keys     []rfcKey
		declared = -1 // bits from the last "Key length:" line
	)
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "Key length:"):
			var bits int
			if _, err := fmt.Sscanf(line, "Key length: %d bits.", &bits); err != nil {
				t.Fatalf("%s:%d: bad key length line %q: %v", rfc6229Path, ln, line, err)
			}
			declared = bits
		case strings.HasPrefix(line, "key:"):
			h := strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(line, "key:")), "0x")
			key, err := hex.DecodeString(h)
			if err != nil {
				t.Fatalf("%s:%d: bad key %q: %v", rfc6229Path, ln, line, err)
			}
			if declared != 8*len(key) {
				t.Fatalf("%s:%d: key has %d bits, but the preceding line declared %d", rfc6229Path, ln, 8*len(key), declared)
			}
			declared = -1
			keys = append(keys, rfcKey{key: key})
		case strings.HasPrefix(line, "DEC"):
			if len(keys) == 0 {
				t.Fatalf("%s:%d: vector before any key", rfc6229Path, ln)
			}
			head, data, ok := strings.Cut(line, ":")
			fields := strings.Fields(head)
			if !ok || len(fields) != 4 || fields[0] != "DEC" || fields[2] != "HEX" {
				t.Fatalf("%s:%d: malformed vector line %q", rfc6229Path, ln, line)
			}
			dec, err1 := strconv.Atoi(fields[1])
			hx, err2 := strconv.ParseInt(fields[3], 16, 32)
			if err1 != nil || err2 != nil || int64(dec) != hx {
				t.Fatalf("%s:%d: inconsistent offsets in %q", rfc6229Path, ln, line)
			}
			want, err := hex.DecodeString(strings.Join(strings.Fields(data), ""))
			if err != nil || len(want) != 16 {
				t.Fatalf("%s:%d: want 16 hex bytes in %q (err %v)", rfc6229Path, ln, line, err)
			}
			k := &keys[len(keys)-1]
			k.vectors = append(k.vectors, rfcVector{key: k.key, offset: dec, want: want, line: ln})
		default:
			t.Fatalf("%s:%d: unrecognised line %q", rfc6229Path, ln, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", rfc6229Path, err)
	}
	return keys
}

// TestRFC6229FixtureComplete guards against a truncated or damaged fixture:
// it must hold both key sets, every key length and every offset.
func TestRFC6229FixtureComplete(t *testing.T) {
	keys := loadRFC6229(t)
	total := 0
	for _, k := range keys {
		total += len(k.vectors)
	}
	if total != rfc6229Want {
		t.Fatalf("fixture holds %d vectors, want %d", total, rfc6229Want)
	}
	if len(keys) != 2*len(rfc6229KeyBits) {
		t.Fatalf("fixture holds %d keys, want %d", len(keys), 2*len(rfc6229KeyBits))
	}

	set1 := make([]byte, 32)
	for i := range set1 {
		set1[i] = byte(i + 1)
	}
	set2, _ := hex.DecodeString("1ada31d5cf688221c109163908ebe51debb46227c6cc8b37641910833222772a")
	for n, k := range keys {
		bits := rfc6229KeyBits[n%len(rfc6229KeyBits)]
		var wantKey []byte
		if n < len(rfc6229KeyBits) {
			wantKey = set1[:bits/8] // 0x0102030405...
		} else {
			wantKey = set2[len(set2)-bits/8:] // trailing bytes of the 256-bit key
		}
		if !bytes.Equal(k.key, wantKey) {
			t.Errorf("key #%d: got %x, want %x", n, k.key, wantKey)
		}
		var offs []int
		for _, v := range k.vectors {
			offs = append(offs, v.offset)
		}
		if !slices.Equal(offs, rfc6229Offsets) {
			t.Errorf("key %x: got offsets %v, want %v", k.key, offs, rfc6229Offsets)
		}
	}
}

// TestRFC6229 checks every published vector, feeding the keystream through
// XORKeyStream in chunks of many sizes so that both the 8-byte main loop and
// the byte-wise tail are exercised at every alignment.
func TestRFC6229(t *testing.T) {
	keys := loadRFC6229(t)
	chunkSizes := []int{1, 3, 7, 8, 9, 15, 16, 17, 64, 100, 255, 256, 1000, 4112}
	const streamLen = 4096 + 16

	for _, k := range keys {
		for _, chunk := range chunkSizes {
			t.Run(fmt.Sprintf("key=%dbit-%x/chunk=%d", 8*len(k.key), k.key[:2], chunk), func(t *testing.T) {
				c, err := NewCipher(k.key)
				if err != nil {
					t.Fatalf("NewCipher: %v", err)
				}
				stream := make([]byte, streamLen) // zero plaintext => keystream
				for off := 0; off < streamLen; off += chunk {
					end := min(off+chunk, streamLen)
					c.XORKeyStream(stream[off:end], stream[off:end])
				}
				for _, v := range k.vectors {
					if got := stream[v.offset : v.offset+16]; !bytes.Equal(got, v.want) {
						t.Errorf("%s:%d offset %d: got %x want %x", rfc6229Path, v.line, v.offset, got, v.want)
					}
				}
			})
		}
	}
}

// TestRFC6229Discard positions the cipher with Discard/NewCipherDrop and
// reads a single vector, for every published offset.
func TestRFC6229Discard(t *testing.T) {
	for _, k := range loadRFC6229(t) {
		for _, v := range k.vectors {
			t.Run(fmt.Sprintf("key=%x/offset=%d", k.key, v.offset), func(t *testing.T) {
				c, err := NewCipherDrop(k.key, v.offset)
				if err != nil {
					t.Fatalf("NewCipherDrop: %v", err)
				}
				got := make([]byte, 16)
				c.XORKeyStream(got, got)
				if !bytes.Equal(got, v.want) {
					t.Errorf("got %x want %x", got, v.want)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Agreement with crypto/rc4

func newRand(t testing.TB) *rand.Rand {
	seed := uint64(0x5eed_0c4a_2026)
	t.Logf("rand seed %#x", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustStd(t testing.TB, key []byte) *stdrc4.Cipher {
	t.Helper()
	c, err := stdrc4.NewCipher(key)
	if err != nil {
		t.Fatalf("crypto/rc4.NewCipher(%d-byte key): %v", len(key), err)
	}
	return c
}

func mustNew(t testing.TB, key []byte) *Cipher {
	t.Helper()
	c, err := NewCipher(key)
	if err != nil {
		t.Fatalf("NewCipher(%d-byte key): %v", len(key), err)
	}
	return c
}

// TestMatchesStdlib compares against crypto/rc4 for every legal key length
// and a spread of message lengths (including 0), over several successive
// calls so that the carried i/j state is compared too.
func TestMatchesStdlib(t *testing.T) {
	r := newRand(t)
	for keyLen := 1; keyLen <= 256; keyLen++ {
		t.Run(fmt.Sprintf("keylen=%d", keyLen), func(t *testing.T) {
			key := randBytes(r, keyLen)
			ours, ref := mustNew(t, key), mustStd(t, key)
			lengths := []int{0, 1, 7, 8, 9, r.IntN(64), r.IntN(4096), 0, r.IntN(70000)}
			for call, n := range lengths {
				src := randBytes(r, n)
				got, want := make([]byte, n), make([]byte, n)
				ours.XORKeyStream(got, src)
				ref.XORKeyStream(want, src)
				if !bytes.Equal(got, want) {
					t.Fatalf("call %d (len %d): got %x want %x", call, n, head(got), head(want))
				}
			}
		})
	}
}

func head(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// TestInPlace checks dst == src (the only permitted overlap) against an
// out-of-place run.
func TestInPlace(t *testing.T) {
	r := newRand(t)
	for _, n := range []int{0, 1, 5, 8, 13, 64, 1000, 1 << 16} {
		t.Run(fmt.Sprintf("len=%d", n), func(t *testing.T) {
			key := randBytes(r, 16)
			src := randBytes(r, n)
			want := make([]byte, n)
			mustNew(t, key).XORKeyStream(want, src)

			buf := slices.Clone(src)
			mustNew(t, key).XORKeyStream(buf, buf)
			if !bytes.Equal(buf, want) {
				t.Errorf("got %x want %x", head(buf), head(want))
			}

			// A longer dst that starts at src is an exact overlap too.
			buf = append(slices.Clone(src), 0xAA, 0xBB)
			mustNew(t, key).XORKeyStream(buf, buf[:n])
			if !bytes.Equal(buf[:n], want) || buf[n] != 0xAA || buf[n+1] != 0xBB {
				t.Errorf("long dst: got %x want %x followed by aabb", head(buf), head(want))
			}
		})
	}
}

// TestManySmallCallsEqualOneCall splits a stream at random points.
func TestManySmallCallsEqualOneCall(t *testing.T) {
	r := newRand(t)
	for _, maxChunk := range []int{1, 2, 8, 17, 100, 5000} {
		t.Run(fmt.Sprintf("maxchunk=%d", maxChunk), func(t *testing.T) {
			key := randBytes(r, 1+r.IntN(256))
			src := randBytes(r, 20000)
			want := make([]byte, len(src))
			mustNew(t, key).XORKeyStream(want, src)

			got := make([]byte, len(src))
			c := mustNew(t, key)
			for off := 0; off < len(src); {
				n := min(r.IntN(maxChunk+1), len(src)-off) // may be 0
				c.XORKeyStream(got[off:off+n], src[off:off+n])
				off += n
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got %x want %x", head(got), head(want))
			}
		})
	}
}

// TestDiscard checks that Discard(n) is the same as encrypting n bytes and
// throwing them away, including between other calls.
func TestDiscard(t *testing.T) {
	r := newRand(t)
	for _, n := range []int{0, 1, 7, 8, 255, 256, 257, RFC4345Discard, 10000} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			key := randBytes(r, 1+r.IntN(256))
			pre := r.IntN(20)

			a := mustNew(t, key)
			a.XORKeyStream(make([]byte, pre), make([]byte, pre))
			a.Discard(n)
			got := make([]byte, 300)
			a.XORKeyStream(got, got)

			b := mustNew(t, key)
			junk := make([]byte, pre+n)
			b.XORKeyStream(junk, junk)
			want := make([]byte, 300)
			b.XORKeyStream(want, want)

			if !bytes.Equal(got, want) {
				t.Errorf("got %x want %x", head(got), head(want))
			}
		})
	}
}

func TestNewCipherDrop(t *testing.T) {
	if RFC4345Discard != 1536 {
		t.Fatalf("RFC4345Discard: got %d want 1536", RFC4345Discard)
	}
	r := newRand(t)
	for _, keyLen := range []int{16, 32} { // arcfour128, arcfour256
		key := randBytes(r, keyLen)
		c, err := NewCipherDrop(key, RFC4345Discard)
		if err != nil {
			t.Fatalf("NewCipherDrop: %v", err)
		}
		got := make([]byte, 100)
		c.XORKeyStream(got, got)

		ref := mustStd(t, key)
		want := make([]byte, RFC4345Discard+100)
		ref.XORKeyStream(want, want)
		want = want[RFC4345Discard:]
		if !bytes.Equal(got, want) {
			t.Errorf("keylen %d: got %x want %x", keyLen, head(got), head(want))
		}
	}

	if _, err := NewCipherDrop([]byte("k"), -1); err == nil {
		t.Errorf("NewCipherDrop(n=-1): got nil error, want an error")
	}
	var kse KeySizeError
	if _, err := NewCipherDrop(nil, RFC4345Discard); !errors.As(err, &kse) || kse != 0 {
		t.Errorf("NewCipherDrop(empty key): got %v, want KeySizeError(0)", err)
	}
}

// ---------------------------------------------------------------------------
// Errors, Reset and misuse

func TestKeySizeError(t *testing.T) {
	tests := []struct {
		n       int
		wantErr bool
	}{
		{0, true}, {1, false}, {5, false}, {256, false}, {257, true}, {1000, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("len=%d", tt.n), func(t *testing.T) {
			c, err := NewCipher(make([]byte, tt.n))
			if !tt.wantErr {
				if err != nil || c == nil {
					t.Fatalf("got (%v, %v), want a cipher and nil error", c, err)
				}
				return
			}
			if c != nil {
				t.Errorf("got cipher %p, want nil", c)
			}
			var kse KeySizeError
			if !errors.As(err, &kse) {
				t.Fatalf("got error %T %v, want KeySizeError", err, err)
			}
			if int(kse) != tt.n {
				t.Errorf("got KeySizeError(%d), want KeySizeError(%d)", int(kse), tt.n)
			}
			if got, want := err.Error(), fmt.Sprintf("rc4: invalid key size %d", tt.n); got != want {
				t.Errorf("got message %q want %q", got, want)
			}
		})
	}
	if _, err := NewCipher(nil); err == nil {
		t.Errorf("NewCipher(nil): got nil error, want KeySizeError(0)")
	}
}

// TestResetZeroesState is an internal test: it looks at the unexported
// state directly.
func TestResetZeroesState(t *testing.T) {
	c := mustNew(t, []byte("a key that must not linger"))
	c.XORKeyStream(make([]byte, 123), make([]byte, 123)) // move i and j
	if c.i == 0 && c.j == 0 {
		t.Fatalf("test setup: i and j still zero")
	}
	c.Reset()
	for n, v := range c.s {
		if v != 0 {
			t.Fatalf("after Reset: got s[%d] = %#x, want 0", n, v)
		}
	}
	if c.i != 0 || c.j != 0 {
		t.Errorf("after Reset: got i=%d j=%d, want 0 0", c.i, c.j)
	}

	// The cipher is unusable afterwards: it refuses instead of silently
	// producing a zero keystream.
	wantPanic(t, "XORKeyStream after Reset", "rc4: use of Cipher after Reset", func() {
		c.XORKeyStream(make([]byte, 4), make([]byte, 4))
	})
	wantPanic(t, "Discard after Reset", "rc4: use of Cipher after Reset", func() { c.Discard(1) })
}

func wantPanic(t *testing.T, what, msg string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Errorf("%s: got no panic, want panic %q", what, msg)
			return
		}
		if got := fmt.Sprint(r); got != msg {
			t.Errorf("%s: got panic %q want %q", what, got, msg)
		}
	}()
	f()
}

func TestMisusePanics(t *testing.T) {
	buf := make([]byte, 64)
	tests := []struct {
		name     string
		dst, src []byte
		msg      string // "" means no panic
	}{
		{"dst shorter", buf[:10], buf[32:43], "rc4: output smaller than input"},
		{"nil dst", nil, buf[:1], "rc4: output smaller than input"},
		{"dst one ahead", buf[1:17], buf[0:16], "rc4: invalid buffer overlap"},
		{"dst one behind", buf[0:16], buf[1:17], "rc4: invalid buffer overlap"},
		{"tail overlap", buf[15:31], buf[0:16], "rc4: invalid buffer overlap"},
		{"src starts inside dst", buf[0:8], buf[2:6], "rc4: invalid buffer overlap"},
		{"long dst, used part overlaps", buf[15:40], buf[20:30], "rc4: invalid buffer overlap"},
		{"long dst, only unused part overlaps", buf[0:40], buf[20:30], ""},
		{"exact", buf[0:16], buf[0:16], ""},
		{"adjacent", buf[16:32], buf[0:16], ""},
		{"adjacent other side", buf[0:16], buf[16:32], ""},
		{"empty src, nil dst", nil, nil, ""},
		{"empty src, overlapping dst", buf[1:5], buf[0:0], ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, []byte("key"))
			if tt.msg == "" {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("got panic %v, want none", r)
					}
				}()
				c.XORKeyStream(tt.dst, tt.src)
				return
			}
			wantPanic(t, tt.name, tt.msg, func() { c.XORKeyStream(tt.dst, tt.src) })
		})
	}
	wantPanic(t, "negative Discard", "rc4: negative discard count", func() {
		mustNew(t, []byte("key")).Discard(-1)
	})
}

// ---------------------------------------------------------------------------
// Agreement with the openssl binary

// TestOpenSSL encrypts random data with `openssl enc` and compares. RC4 lives
// in OpenSSL 3's legacy provider. Without an openssl binary (or without the
// legacy provider) the test is skipped, unless PKIBOARD_REQUIRE_OPENSSL=1, in
// which case it fails.
func TestOpenSSL(t *testing.T) {
	required := os.Getenv("PKIBOARD_REQUIRE_OPENSSL") == "1"
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if required {
			t.Fatalf("%s (PKIBOARD_REQUIRE_OPENSSL=1, so this is a failure)", msg)
		}
		t.Skipf("%s; set PKIBOARD_REQUIRE_OPENSSL=1 to make this a failure", msg)
	}
	bin, err := exec.LookPath("openssl")
	if err != nil {
		unavailable("openssl not found on PATH: %v", err)
	}

	run := func(cipher string, key, data []byte) ([]byte, error) {
		cmd := exec.Command(bin, "enc", "-"+cipher, "-K", hex.EncodeToString(key),
			"-nosalt", "-provider", "legacy", "-provider", "default")
		cmd.Stdin = bytes.NewReader(data)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%v: %v: %s", cmd.Args, err, strings.TrimSpace(stderr.String()))
		}
		return stdout.Bytes(), nil
	}

	// Probe once so that a missing legacy provider is reported clearly.
	if _, err := run("rc4", make([]byte, 16), []byte("probe")); err != nil {
		unavailable("openssl cannot run RC4 (is the legacy provider installed?): %v", err)
	}

	r := newRand(t)
	tests := []struct {
		cipher string
		keyLen int
		n      int
	}{
		{"rc4", 16, 1},
		{"rc4", 16, 15},
		{"rc4", 16, 4096},
		{"rc4", 16, 100003},
		{"rc4-40", 5, 33},
		{"rc4-40", 5, 8191},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/len=%d", tt.cipher, tt.n), func(t *testing.T) {
			key := randBytes(r, tt.keyLen)
			data := randBytes(r, tt.n)
			want, err := run(tt.cipher, key, data)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			mustNew(t, key).XORKeyStream(got, data)
			if !bytes.Equal(got, want) {
				t.Errorf("key %x: got %x want %x (len got %d, want %d)", key, head(got), head(want), len(got), len(want))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Fuzzing

// FuzzXORKeyStream compares with crypto/rc4 on arbitrary keys and data, both
// in one call and split at a data-dependent point. Seeds live in
// testdata/fuzz/FuzzXORKeyStream.
func FuzzXORKeyStream(f *testing.F) {
	f.Add([]byte("Key"), []byte("Plaintext"))
	f.Fuzz(func(t *testing.T, key, data []byte) {
		ours, err := NewCipher(key)
		ref, refErr := stdrc4.NewCipher(key)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("key len %d: got error %v, crypto/rc4 error %v", len(key), err, refErr)
		}
		if err != nil {
			var kse KeySizeError
			if !errors.As(err, &kse) || int(kse) != len(key) {
				t.Fatalf("key len %d: got %v, want KeySizeError(%d)", len(key), err, len(key))
			}
			return
		}
		want := make([]byte, len(data))
		ref.XORKeyStream(want, data)

		got := make([]byte, len(data))
		split := 0
		if len(data) > 0 {
			split = int(data[0]) % (len(data) + 1)
		}
		ours.XORKeyStream(got[:split], data[:split])
		ours.XORKeyStream(got[split:], data[split:])
		if !bytes.Equal(got, want) {
			t.Fatalf("key %x split %d: got %x want %x", key, split, head(got), head(want))
		}

		// In place, from a fresh cipher.
		buf := slices.Clone(data)
		mustNew(t, key).XORKeyStream(buf, buf)
		if !bytes.Equal(buf, want) {
			t.Fatalf("key %x in place: got %x want %x", key, head(buf), head(want))
		}
	})
}

// TestFuzzCorpusPresent makes sure the committed seed corpus is not lost.
func TestFuzzCorpusPresent(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzXORKeyStream/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("seed corpus: got %d files (err %v), want at least 1", len(files), err)
	}
}

// ---------------------------------------------------------------------------
// Benchmarks

var benchSizes = []struct {
	name string
	n    int
}{
	{"16KiB", 16 << 10},
	{"1MiB", 1 << 20},
}

var benchKey = []byte("0123456789abcdef")

func BenchmarkXORKeyStream(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			c := mustNew(b, benchKey)
			buf := make([]byte, sz.n)
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				c.XORKeyStream(buf, buf)
			}
		})
	}
}

func BenchmarkStdlibRC4(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			c := mustStd(b, benchKey)
			buf := make([]byte, sz.n)
			b.SetBytes(int64(sz.n))
			for b.Loop() {
				c.XORKeyStream(buf, buf)
			}
		})
	}
}

func BenchmarkNewCipherDrop(b *testing.B) {
	for b.Loop() {
		if _, err := NewCipherDrop(benchKey, RFC4345Discard); err != nil {
			b.Fatal(err)
		}
	}
}
