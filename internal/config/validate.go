package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"pkiboard/internal/keys"
	"pkiboard/internal/web"
)

// Validate checks every value and returns all problems found, each naming its
// key (a Problems).
func (c *Config) Validate() error {
	v := &validator{}
	if c.Role != "" {
		v.oneOf("role", c.Role, Roles)
	}
	v.oneOf("log.level", c.Log.Level, []string{"debug", "info", "warn", "error"})
	v.oneOf("log.format", c.Log.Format, []string{"console", "json"})

	ca := &c.CA
	v.listenAddr("ca.listen", ca.Listen)
	v.nonEmpty("ca.data_dir", ca.DataDir)
	v.http("ca", &ca.HTTP)
	v.nonEmpty("ca.common_name", ca.CommonName)
	if ca.Country != "" && len(ca.Country) != 2 {
		v.add("ca.country", "%q is not a two-letter country code", ca.Country)
	}
	v.oneOf("ca.key_algorithm", ca.KeyAlgorithm, keys.Algorithms)
	if ca.KeyPassphraseEnv != "" && ca.KeyPassphraseFile != "" {
		v.add("ca.key_passphrase_env", "set key_passphrase_env or key_passphrase_file, not both")
	}
	v.positive("ca.root_validity", ca.RootValidity)
	v.positive("ca.cert_validity", ca.CertValidity)
	v.positive("ca.crl_validity", ca.CRLValidity)
	v.positive("ca.status_validity", ca.StatusValidity)
	if ca.CertValidity > ca.RootValidity {
		v.add("ca.cert_validity", "%s is longer than root_validity %s: certificates would outlive their root", ca.CertValidity.D(), ca.RootValidity.D())
	}
	v.oneOf("ca.policy", ca.Policy, []string{"open", "token"})
	// A Pattern that is set was checked when it was decoded (Pattern.UnmarshalText).
	if ca.SIDPattern.Regexp() == nil {
		v.add("ca.sid_pattern", "%q is not a valid regular expression", ca.SIDPattern.String())
	}
	v.positive("ca.token_ttl", ca.TokenTTL)
	v.nonEmpty("ca.board_name", ca.BoardName)
	if len(ca.BoardName) > 64 {
		v.add("ca.board_name", "%d bytes is longer than the 64 a certificate name may have", len(ca.BoardName))
	}
	v.limits("ca", &ca.Limits)

	b := &c.Board
	v.listenAddr("board.listen", b.Listen)
	v.nonEmpty("board.data_dir", b.DataDir)
	v.http("board", &b.HTTP)
	v.nonEmpty("board.name", b.Name)
	if len(b.Name) > 64 {
		v.add("board.name", "%d bytes is longer than the 64 a certificate name may have", len(b.Name))
	}
	v.dialAddr("board.ca_addr", b.CAAddr)
	v.fingerprint("board.root_fingerprint", b.RootFingerprint)
	v.oneOf("board.key_algorithm", b.KeyAlgorithm, keys.Algorithms)
	v.positive("board.crl_refresh", b.CRLRefresh)
	v.positive("board.hello_window", b.HelloWindow)
	v.oneOf("board.crl_stale", b.CRLStale, []string{"fail", "warn"})
	if b.MaxSubmission <= 0 {
		v.add("board.max_submission", "must be more than 0 bytes")
	}
	v.limits("board", &b.Limits)
	if b.MaxFrame < MinBoardFrame {
		v.add("board.max_frame", "%d is too small: the board must take records of %d bytes (a full 64 KiB Data chunk with its type byte and tag)", b.MaxFrame, MinBoardFrame)
	}
	v.positive("board.partial_ttl", b.PartialTTL)
	if b.PartialQuota < b.MaxSubmission {
		v.add("board.partial_quota", "%s is less than max_submission %s: an interrupted upload of the largest submission could not be kept; make it at least max_submission (twice is the default)", sizeText(b.PartialQuota), sizeText(b.MaxSubmission))
	}

	s := &c.Student
	v.dialAddr("student.ca_addr", s.CAAddr)
	v.dialAddr("student.board_addr", s.BoardAddr)
	if s.DataDir == "" {
		_, err := UserDataDir()
		v.add("student.data_dir", "\"\" means the user's own directory, which this system does not name (%v): set a directory", err)
	}
	v.nonEmpty("student.board_name", s.BoardName)
	v.fingerprint("student.root_fingerprint", s.RootFingerprint)
	v.oneOf("student.key_algorithm", s.KeyAlgorithm, keys.Algorithms)
	if len(s.Suites) == 0 {
		v.add("student.suites", "must name at least one of %s", strings.Join(suiteNames(), ", "))
	}
	for i, suite := range s.Suites {
		if !suite.known() {
			v.add("student.suites", "%q is not one of %s", suite.String(), strings.Join(suiteNames(), ", "))
		}
		if slices.Contains(s.Suites[:i], suite) {
			v.add("student.suites", "%q is listed twice", suite.String())
		}
	}
	if s.Parallel < 1 || s.Parallel > 1024 {
		v.add("student.parallel", "%d is outside 1..1024", s.Parallel)
	}
	if n := len(s.Assignment); n < 1 || n > 64 {
		v.add("student.assignment", "must be an assignment id of 1 to 64 bytes (\"lab\" for the lab's), not %q", s.Assignment)
	}
	v.positive("student.timeout", s.Timeout)
	return v.err()
}

// MinBoardFrame is the smallest board.max_frame that takes a full session record
// (session.MaxRecord: a type byte, 64 KiB of data, a 32-byte tag).
const MinBoardFrame = 1 + 64<<10 + 32

// Problem is one bad value Validate found: the key that holds it, and what
// is wrong with it.
type Problem struct {
	Key  string // e.g. "ca.listen"
	Text string // e.g. `"nowhere" is not host:port`
}

func (p Problem) String() string { return p.Key + ": " + p.Text }

// Problems is the error Validate returns: every bad value, in the order
// the keys are checked.
type Problems []Problem

func (ps Problems) Error() string {
	texts := make([]string, len(ps))
	for i, p := range ps {
		texts[i] = p.String()
	}
	return strings.Join(texts, "; ")
}

type validator struct{ problems Problems }

func (v *validator) add(key, format string, args ...any) {
	v.problems = append(v.problems, Problem{Key: key, Text: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return v.problems
}

func (v *validator) nonEmpty(key, val string) {
	if strings.TrimSpace(val) == "" {
		v.add(key, "must not be empty")
	}
}

func (v *validator) oneOf(key, val string, allowed []string) {
	if !slices.Contains(allowed, val) {
		v.add(key, "%q is not one of %s", val, strings.Join(allowed, ", "))
	}
}

func (v *validator) positive(key string, d Duration) {
	if d <= 0 {
		v.add(key, "%s must be a positive duration", d.D())
	}
}

// fingerprint accepts none or 32 bytes. A Fingerprint decoded from the file is
// one of these (Fingerprint.UnmarshalText); this catches one set otherwise.
func (v *validator) fingerprint(key string, fp Fingerprint) {
	if len(fp) != 0 && len(fp) != 32 {
		v.add(key, "%q is not a SHA-256 fingerprint (64 hex digits, colons allowed)", hex.EncodeToString(fp))
	}
}

// listenAddr accepts host:port with a port of 0 (any free port) to 65535.
func (v *validator) listenAddr(key, addr string) { v.addr(key, addr, 0) }

// dialAddr accepts host:port with a port of 1 to 65535.
func (v *validator) dialAddr(key, addr string) { v.addr(key, addr, 1) }

func (v *validator) addr(key, addr string, minPort int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, "%q is not host:port (for example \"127.0.0.1:8011\" or \"[::1]:8011\")", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < minPort || n > 65535 {
		v.add(key, "%q has port %q, which is not a number in %d..65535", addr, port, minPort)
	}
	if minPort > 0 && host == "" {
		v.add(key, "%q has no host", addr)
	}
}

func (v *validator) limits(section string, l *Limits) {
	if l.MaxFrame < 4<<10 || l.MaxFrame > 16<<20 {
		v.add(section+".max_frame", "%d is outside 4096..16777216 bytes", l.MaxFrame)
	}
	if l.MaxConns < 1 {
		v.add(section+".max_conns", "%d must be at least 1", l.MaxConns)
	}
	v.positive(section+".read_timeout", l.ReadTimeout)
	v.positive(section+".write_timeout", l.WriteTimeout)
	v.positive(section+".handshake_timeout", l.HandshakeTimeout)
	v.positive(section+".idle_timeout", l.IdleTimeout)
	v.positive(section+".shutdown_timeout", l.ShutdownTimeout)
	if l.MaxUnproven < 1 || l.MaxUnproven > l.MaxConns {
		v.add(section+".max_unproven", "%d is outside 1..max_conns (%d)", l.MaxUnproven, l.MaxConns)
	}
	if l.SourceBurst < 0 || l.SourceBurst > 1<<20 {
		v.add(section+".source_burst", "%d is outside 0..1048576 (0 turns the per-source limit off)", l.SourceBurst)
	}
	if l.SourceBurst > 0 && !(l.SourceRate > 0 && l.SourceRate <= 1<<20) {
		v.add(section+".source_rate", "%v must be a number of failures a second above 0 (at most 1048576)", l.SourceRate)
	}
}

// sizeText formats a size as the file writes it.
func sizeText(s Size) string {
	b, _ := s.MarshalText()
	return string(b)
}

// http checks a daemon's HTTP endpoint: off (""), or a loopback listen, or
// any listen with both TLS files (web.CheckListen says why).
func (v *validator) http(section string, h *HTTP) {
	if h.HTTPListen == "" {
		if h.HTTPTLSCert != "" || h.HTTPTLSKey != "" {
			v.add(section+".http_tls_cert", "is set, but http_listen is empty, so there is no endpoint to serve it")
		}
		return
	}
	if err := web.CheckListen(h.HTTPListen, h.HTTPTLSCert, h.HTTPTLSKey); err != nil {
		v.add(section+".http_listen", "%s", strings.TrimPrefix(err.Error(), "web: "))
	}
}
