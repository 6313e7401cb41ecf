// Package fuzzseed writes, reads and checks the committed seed corpora of the
// fuzz targets: the files testdata/fuzz/<Target>/<name> of a package, in the
// format go test -fuzz reads. It is for tests only.
package fuzzseed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// header is the first line of every seed file.
const header = "go test fuzz v1"

// Dir returns the corpus directory of target, relative to the package.
func Dir(target string) string { return filepath.Join("testdata", "fuzz", target) }

// Encode returns the seed file of one input. It takes the types the targets
// of this repository use: []byte, string, bool and uint8.
func Encode(values ...any) string {
	var b strings.Builder
	b.WriteString(header + "\n")
	for _, v := range values {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		case uint8:
			fmt.Fprintf(&b, "uint8(%d)\n", v)
		default:
			panic(fmt.Sprintf("fuzzseed: cannot encode a %T", v))
		}
	}
	return b.String()
}

// Decode reads a seed file that Encode could have written.
func Decode(data []byte) ([]any, error) {
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if lines[0] != header {
		return nil, errors.New("not a seed file")
	}
	var out []any
	for _, l := range lines[1:] {
		typ, arg, ok := strings.Cut(l, "(")
		arg, ok2 := strings.CutSuffix(arg, ")")
		if !ok || !ok2 {
			return nil, fmt.Errorf("cannot read line %q", l)
		}
		var err error
		switch typ {
		case "[]byte", "string":
			var s string
			if s, err = strconv.Unquote(arg); err == nil {
				if typ == "string" {
					out = append(out, s)
				} else {
					out = append(out, []byte(s))
				}
			}
		case "bool":
			var v bool
			if v, err = strconv.ParseBool(arg); err == nil {
				out = append(out, v)
			}
		case "uint8":
			var v uint64
			if v, err = strconv.ParseUint(arg, 10, 8); err == nil {
				out = append(out, uint8(v))
			}
		default:
			err = fmt.Errorf("unknown type %s", typ)
		}
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", l, err)
		}
	}
	return out, nil
}

// Read reads and decodes one seed file.
func Read(path string) ([]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	values, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return values, nil
}

// Write writes each seed of target (its name and the values of its input) as
// a file of the target's corpus directory.
func Write(target string, seeds map[string][]any) error {
	dir := Dir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, values := range seeds {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(Encode(values...)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Check fails t for every seed of target that has no file, and, when exact is
// set, for every file that differs from what its seed encodes to. Seeds made
// with fresh randomness (signatures, keys) cannot be compared: without exact,
// a file need only decode to as many values as its seed has, and the caller
// checks what it holds. how says how to rewrite the corpus.
func Check(t testing.TB, target string, seeds map[string][]any, exact bool, how string) {
	t.Helper()
	for name, values := range seeds {
		path := filepath.Join(Dir(target), name)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (%s)", err, how)
			continue
		}
		if exact {
			if string(data) != Encode(values...) {
				t.Errorf("%s is out of date (%s)", path, how)
			}
			continue
		}
		if got, err := Decode(data); err != nil || len(got) != len(values) {
			t.Errorf("%s does not hold %d values (%v; %s)", path, len(values), err, how)
		}
	}
}

// Bytes turns one-[]byte seeds into the form Write and Check take.
func Bytes(seeds map[string][]byte) map[string][]any {
	out := make(map[string][]any, len(seeds))
	for name, s := range seeds {
		out[name] = []any{s}
	}
	return out
}
