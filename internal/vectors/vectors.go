// Package vectors is what the tests that make and check the test vectors of
// PROTOCOL.md's appendix share (packages ca, session and wire): the files of
// testdata/vectors and their encoding, the fixed inputs (keys, randoms), a
// signer that signs deterministically, and implementations straight from the
// specifications of the steps where Go's crypto draws its own randomness or
// hides its intermediate values — RSA-PSS with a given salt and RSA-OAEP with
// a given seed (RFC 8017), HPKE's KEMs and key schedule (RFC 9180, X-Wing) —
// so that each value of a vector is checked against its RFC and not only
// against the code that made it.
//
// It is for tests only: its RSA is textbook RSA, without blinding or
// constant-time arithmetic, and its keys are derived from public labels.
package vectors

import (
	"bytes"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Hex is a byte string that JSON carries as lowercase hex.
type Hex []byte

// MarshalJSON encodes h as a string of lowercase hex.
func (h Hex) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// UnmarshalJSON decodes a string of lowercase hex, and nothing else.
func (h *Hex) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	if s != strings.ToLower(s) {
		return fmt.Errorf("hex %q is not lowercase", s)
	}
	*h = b
	return nil
}

// String returns h in lowercase hex.
func (h Hex) String() string { return hex.EncodeToString(h) }

// Dir returns the directory of the vector files, testdata/vectors at the top
// of the module, found from the working directory (a package's directory
// when go test runs).
func Dir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "vectors"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vectors: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Path returns the path of the vector file name.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	dir, err := Dir()
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// Read returns the committed vector file name.
func Read(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(Path(tb, name))
	if err != nil {
		tb.Fatalf("reading the vector file (make it with go test -run Vectors -update): %v", err)
	}
	return data
}

// Load decodes the committed vector file name into v, strictly: a key v has
// no field for is an error.
func Load(tb testing.TB, name string, v any) {
	tb.Helper()
	if err := Decode(Read(tb, name), v); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
}

// Decode decodes a vector file into v, strictly.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// Marshal encodes v as a vector file: JSON indented by two spaces, with no
// HTML escaping, ending with a newline.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Compare returns nil when got, a vector file as the code makes it now, is
// byte for byte the committed want, else an error listing the first values
// that differ.
func Compare(name string, got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	diffs := Diff(got, want)
	if len(diffs) == 0 {
		diffs = []string{"the files differ in their layout only"}
	}
	if len(diffs) > 12 {
		diffs = append(diffs[:12], fmt.Sprintf("... and %d more", len(diffs)-12))
	}
	return fmt.Errorf("%s differs from what the code makes now (go test -run Vectors -update rewrites it, if the change is meant):\n  %s",
		name, strings.Join(diffs, "\n  "))
}

// Check compares got with the committed file name, or with update writes got
// there instead.
func Check(tb testing.TB, name string, got []byte, update bool) {
	tb.Helper()
	if update {
		path := Path(tb, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	if err := Compare(name, got, Read(tb, name)); err != nil {
		tb.Error(err)
	}
}

// Diff lists the JSON paths at which two vector files hold different
// values, as "path: got … want …".
func Diff(got, want []byte) []string {
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		return []string{fmt.Sprintf("the new file does not decode: %v", err)}
	}
	if err := json.Unmarshal(want, &w); err != nil {
		return []string{fmt.Sprintf("the committed file does not decode: %v", err)}
	}
	var out []string
	diffValues("", g, w, &out)
	return out
}

func diffValues(path string, got, want any, out *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			diffValues(path+"."+k, g[k], w[k], out)
		}
		return
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		for i := range w {
			diffValues(fmt.Sprintf("%s[%d]", path, i), g[i], w[i], out)
		}
		return
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		*out = append(*out, fmt.Sprintf("%s: got %s want %s", strings.TrimPrefix(path, "."), short(gj), short(wj)))
	}
}

func short(b []byte) string {
	if len(b) > 80 {
		return string(b[:76]) + "...\""
	}
	return string(b)
}

// Stream returns the endless byte stream of label: SHAKE256 of
// "pkiboard v2 test vectors: " || label. Every fixed input of the vectors is
// drawn from such a stream, so that it is the same on every machine and in
// every Go version.
func Stream(label string) io.Reader {
	h := sha3.NewSHAKE256()
	h.Write([]byte("pkiboard v2 test vectors: " + label))
	return h
}

// Bytes returns the first n bytes of Stream(label).
func Bytes(label string, n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(Stream(label), b); err != nil {
		panic(err)
	}
	return b
}

// Script is an io.Reader that serves named values, one per Read call, in
// order: the randomness a state machine draws, pinned to the inputs a vector
// names. A Read of another length than the next value's, or beyond the last,
// is an error that says so: the code draws otherwise than the vector says.
type Script struct {
	Names  []string
	Values [][]byte
	next   int
}

// NewScript returns a Script serving each name's value, Bytes(label+" "+name, n).
func NewScript(label string, names []string, sizes []int) *Script {
	s := &Script{Names: names}
	for i, name := range names {
		s.Values = append(s.Values, Bytes(label+" "+name, sizes[i]))
	}
	return s
}

// Value returns the value of name.
func (s *Script) Value(name string) []byte {
	for i, n := range s.Names {
		if n == name {
			return s.Values[i]
		}
	}
	panic("vectors: no scripted value " + name)
}

// Read serves the next value.
func (s *Script) Read(p []byte) (int, error) {
	if s.next >= len(s.Values) {
		return 0, fmt.Errorf("vectors: the code draws %d random bytes more than the vector's %s", len(p), strings.Join(s.Names, ", "))
	}
	v := s.Values[s.next]
	if len(p) != len(v) {
		return 0, fmt.Errorf("vectors: the code draws %d random bytes where the vector has %s of %d", len(p), s.Names[s.next], len(v))
	}
	s.next++
	return copy(p, v), nil
}

// Done returns an error unless every value was drawn.
func (s *Script) Done() error {
	if s.next != len(s.Values) {
		return fmt.Errorf("vectors: the code drew %s but not %s", strings.Join(s.Names[:s.next], ", "), strings.Join(s.Names[s.next:], ", "))
	}
	return nil
}
