package config

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"pkiboard/session"
)

// Duration is a time.Duration written in the file as a Go duration string
// ("90s", "72h"), with days and weeks as people write them ("3d", "2w",
// "1d12h"; see ParseDuration). A bare integer is refused rather than read as
// nanoseconds.
type Duration time.Duration

// dayUnits matches a number of days or weeks inside a duration string.
var dayUnits = regexp.MustCompile(`([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([dw])`)

// ParseDuration parses a duration as time.ParseDuration does, and also days
// ("d", 24 hours) and weeks ("w", 7 days): "3d", "2w", "1d12h", "1.5d". It is
// the one parser of every duration pkiboard reads, in the config and in
// flags (--ttl).
func ParseDuration(s string) (time.Duration, error) {
	var bad error
	hours := dayUnits.ReplaceAllStringFunc(s, func(m string) string {
		sub := dayUnits.FindStringSubmatch(m)
		n, err := strconv.ParseFloat(sub[1], 64)
		if err != nil {
			bad = err
			return m
		}
		per := 24.0
		if sub[2] == "w" {
			per = 7 * 24
		}
		return strconv.FormatFloat(n*per, 'f', -1, 64) + "h"
	})
	if bad != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	d, err := time.ParseDuration(hours)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
}

// UnmarshalText parses a duration string (see ParseDuration).
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like \"30s\", \"15m\", \"72h\" or \"3d\")", text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written in the file as a string with an optional binary
// unit: "512", "64KiB", "256MiB", "1GiB".
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1},
}

// UnmarshalText parses a size string.
func (s *Size) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(str, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil || n < 0 || n > (1<<62)/u.mult {
			break
		}
		*s = Size(n * u.mult)
		return nil
	}
	return fmt.Errorf("%q is not a size (write it like \"64KiB\", \"256MiB\" or \"1GiB\")", text)
}

// MarshalText formats the size in the largest unit that divides it.
func (s Size) MarshalText() ([]byte, error) {
	for _, u := range sizeUnits[:3] {
		if s != 0 && int64(s)%u.mult == 0 {
			return []byte(strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(s), 10)), nil
}

// Fingerprint is the SHA-256 fingerprint of a root certificate's DER: 32
// bytes, written in the file as 64 hex digits, optionally separated by colons
// as `openssl x509 -fingerprint -sha256` prints it. It is empty (nil) when the
// file writes "": there is no fingerprint to check the root against.
type Fingerprint []byte

// UnmarshalText parses a fingerprint; "" is none.
func (f *Fingerprint) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*f = nil
		return nil
	}
	b, err := parseFingerprint(string(text))
	if err != nil {
		return err
	}
	*f = b
	return nil
}

// MarshalText formats the fingerprint as colon-separated uppercase hex, or ""
// for none.
func (f Fingerprint) MarshalText() ([]byte, error) {
	if len(f) == 0 {
		return []byte{}, nil
	}
	h := strings.ToUpper(hex.EncodeToString(f))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return []byte(b.String()), nil
}

// parseFingerprint decodes a SHA-256 fingerprint written as 64 hex digits,
// optionally separated by colons.
func parseFingerprint(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits, colons allowed)", s)
	}
	return b, nil
}

// Pattern is the regular expression (RE2 syntax) a student ID must match,
// ca.sid_pattern. The file must anchor it with ^ and $, so that it is plain to
// the reader that it matches the whole SID. The zero Pattern holds no
// expression and is refused by Validate.
type Pattern struct{ re *regexp.Regexp }

// UnmarshalText compiles the expression and checks that it is anchored.
func (p *Pattern) UnmarshalText(text []byte) error {
	re, err := compilePattern(string(text))
	if err != nil {
		return err
	}
	p.re = re
	return nil
}

// compilePattern compiles s as a Pattern: non-empty, valid, anchored.
func compilePattern(s string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(s)
	if err != nil || s == "" {
		return nil, fmt.Errorf("%q is not a valid regular expression", s)
	}
	if !strings.HasPrefix(s, "^") || !strings.HasSuffix(s, "$") {
		return nil, fmt.Errorf("%q must be anchored with ^ and $ so it matches the whole SID", s)
	}
	return re, nil
}

// mustPattern returns s as a Pattern and panics if it is not one, for
// Default's constant.
func mustPattern(s string) Pattern {
	re, err := compilePattern(s)
	if err != nil {
		panic("config: " + err.Error())
	}
	return Pattern{re: re}
}

// MarshalText returns the expression as the file writes it.
func (p Pattern) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// String returns the expression as the file writes it, or "" for the zero
// Pattern.
func (p Pattern) String() string {
	if p.re == nil {
		return ""
	}
	return p.re.String()
}

// Regexp returns the compiled expression, or nil for the zero Pattern.
func (p Pattern) Regexp() *regexp.Regexp { return p.re }

// Suite is a session cipher suite id, written in the file by its name in
// package session's suite table: "aes-256-gcm", "aes-256-ctr-hmac-sha256"
// or "rc4-hmac-sha256".
type Suite uint16

// UnmarshalText looks the name up in session's suite table.
func (s *Suite) UnmarshalText(text []byte) error {
	id, ok := session.SuiteByName(string(text))
	if !ok {
		return fmt.Errorf("%q is not one of %s", text, strings.Join(suiteNames(), ", "))
	}
	*s = Suite(id)
	return nil
}

// MarshalText returns the suite's name.
func (s Suite) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String returns the suite's name, or its id in hex if session has no such
// suite.
func (s Suite) String() string { return session.SuiteName(uint16(s)) }

// known reports whether session implements the suite.
func (s Suite) known() bool { return slices.Contains(session.Suites(), uint16(s)) }

// suiteNames returns the name of every suite session implements.
func suiteNames() []string {
	ids := session.Suites()
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = session.SuiteName(id)
	}
	return names
}

// Suites is student.suites: the cipher suites the student offers, in order of
// preference.
type Suites []Suite

// IDs returns the suites' ids, as session.ClientConfig.Suites takes them.
func (s Suites) IDs() []uint16 {
	ids := make([]uint16, len(s))
	for i, id := range s {
		ids[i] = uint16(id)
	}
	return ids
}
