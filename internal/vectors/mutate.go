package vectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Mutation is a vector file with one value changed.
type Mutation struct {
	Path string // the JSON path of the value changed, such as "records[2].tag"
	Data []byte // the whole file, changed there
}

// Mutations returns one Mutation for every leaf value of a JSON document
// (every string, number and boolean that is not an object key): the value
// with one character changed — in a string of hex, one hex digit for
// another; in a number, its last digit — or an empty string made "00", or a
// boolean negated. The rest of the file is left byte for byte as it was.
func Mutations(data []byte) ([]Mutation, error) {
	type container struct {
		path      string
		object    bool
		key       string // the object's current key
		expectKey bool
		index     int // the array's current index
	}
	var stack []*container
	childPath := func() string {
		if len(stack) == 0 {
			return ""
		}
		c := stack[len(stack)-1]
		if c.object {
			return c.path + "." + c.key
		}
		return fmt.Sprintf("%s[%d]", c.path, c.index)
	}
	advance := func() {
		if len(stack) == 0 {
			return
		}
		if c := stack[len(stack)-1]; c.object {
			c.expectKey = true
		} else {
			c.index++
		}
	}
	var out []Mutation
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		end := int(dec.InputOffset())
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				stack = append(stack, &container{path: childPath(), object: d == '{', expectKey: d == '{'})
			default:
				stack = stack[:len(stack)-1]
				advance()
			}
			continue
		}
		if c := len(stack); c > 0 && stack[c-1].object && stack[c-1].expectKey {
			stack[c-1].key, stack[c-1].expectKey = tok.(string), false
			continue
		}
		changed, err := mutate(data, int(start), end)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", childPath(), err)
		}
		out = append(out, Mutation{Path: trimDot(childPath()), Data: changed})
		advance()
	}
}

func trimDot(p string) string {
	if len(p) > 0 && p[0] == '.' {
		return p[1:]
	}
	return p
}

// mutate returns data with the value whose token lies in data[start:end]
// (after any ',' ':' and white space) changed.
func mutate(data []byte, start, end int) ([]byte, error) {
	i := start
	for i < end && bytes.IndexByte([]byte(" \t\r\n,:"), data[i]) >= 0 {
		i++
	}
	tok := data[i:end]
	out := bytes.Clone(data)
	switch {
	case bytes.Equal(tok, []byte("true")):
		return append(append(bytes.Clone(data[:i]), "false"...), data[end:]...), nil
	case bytes.Equal(tok, []byte("false")):
		return append(append(bytes.Clone(data[:i]), "true"...), data[end:]...), nil
	case bytes.Equal(tok, []byte(`""`)):
		return append(append(bytes.Clone(data[:i]), `"00"`...), data[end:]...), nil
	case len(tok) > 0 && tok[0] == '"':
		// The last letter or digit of the string that is not escaped; in a
		// string of neither, its last character that is not escaped, made x.
		for j := end - 2; j > i; j-- {
			if isAlnum(out[j]) && out[j-1] != '\\' {
				out[j] = changeChar(out[j])
				return out, nil
			}
		}
		if j := end - 2; j > i && out[j] < 0x80 && out[j] != '\\' && out[j-1] != '\\' {
			out[j] = 'x'
			return out, nil
		}
		return nil, fmt.Errorf("no character to change in %s", tok)
	case len(tok) > 0 && isAlnum(tok[len(tok)-1]):
		out[end-1] = changeChar(out[end-1])
		return out, nil
	}
	return nil, fmt.Errorf("cannot change %s", tok)
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// changeChar returns another character of the same kind: a hex digit stays
// a lowercase hex digit, a letter a letter.
func changeChar(c byte) byte {
	switch c {
	case '9', 'f', 'z', 'Z':
		return c - 1
	}
	return c + 1
}
