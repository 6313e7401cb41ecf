package config

import (
	"bytes"
	"encoding"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"pkiboard/session"
)

func TestShippedConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "config.toml"))
	if err != nil {
		t.Fatalf("shipped config.toml: %v", err)
	}
	def := Default()
	if got, want := cfg.CA.Listen, "127.0.0.1:8011"; got != want {
		t.Errorf("ca.listen: got %q want %q", got, want)
	}
	if got, want := cfg.Board.Listen, "127.0.0.1:8002"; got != want {
		t.Errorf("board.listen: got %q want %q", got, want)
	}
	// The shipped file documents the defaults: apart from paths (made absolute),
	// it must say what Default says.
	cfg.Path = ""
	cfg.CA.DataDir, cfg.Board.DataDir, cfg.Student.DataDir = def.CA.DataDir, def.Board.DataDir, def.Student.DataDir
	cfg.Board.EnrollTokenFile = def.Board.EnrollTokenFile
	// The one documented difference: the demo logs the message, as the lab
	// asks; the default does not log submission content.
	if !cfg.Board.LogContent {
		t.Error("board.log_content: the shipped config.toml must keep the lab's \"output the message\" (true)")
	}
	cfg.Board.LogContent = def.Board.LogContent
	if !reflect.DeepEqual(cfg, def) {
		t.Errorf("shipped config.toml differs from Default():\n got %+v\nwant %+v", cfg, def)
	}
}

// TestShippedConfigDocumentsEveryKey checks that every key the loader accepts
// appears in the shipped file, preceded or followed by a comment.
func TestShippedConfigDocumentsEveryKey(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "..", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	for _, key := range tomlKeys(reflect.TypeOf(Config{}), "") {
		section, name := "", key
		if i := strings.LastIndex(key, "."); i >= 0 {
			section, name = key[:i], key[i+1:]
		}
		re := regexp.MustCompile(`^#?\s*` + regexp.QuoteMeta(name) + `\s*=`)
		found := false
		current := ""
		for i, line := range lines {
			if strings.HasPrefix(line, "[") {
				current = strings.Trim(line, "[] ")
				continue
			}
			if current != section || !re.MatchString(line) {
				continue
			}
			commented := strings.Contains(line, " # ") || strings.HasPrefix(line, "#") ||
				(i > 0 && strings.HasPrefix(lines[i-1], "#")) || inCommentedBlock(lines, i)
			if !commented {
				t.Errorf("config.toml: key %s has no comment", key)
			}
			found = true
			break
		}
		if !found {
			t.Errorf("config.toml does not mention key %s", key)
		}
	}
}

// inCommentedBlock reports whether line i belongs to a run of key lines that a
// comment introduces (e.g. organization and country after common_name's comment).
func inCommentedBlock(lines []string, i int) bool {
	for j := i - 1; j >= 0; j-- {
		l := lines[j]
		switch {
		case strings.HasPrefix(l, "#"):
			return true
		case l == "" || strings.HasPrefix(l, "["):
			return false
		}
	}
	return false
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "-" {
			continue
		}
		if f.Anonymous {
			keys = append(keys, tomlKeys(f.Type, prefix)...)
			continue
		}
		// A struct the file writes as text (a Pattern) is one key, as the
		// decoder reads it.
		if f.Type.Kind() == reflect.Struct && tag != "" && !reflect.PointerTo(f.Type).Implements(textUnmarshaler) {
			keys = append(keys, tomlKeys(f.Type, prefix+tag+".")...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string // every fragment must appear in the error
	}{
		{"missing.toml", []string{"missing.toml", "does not exist"}},
		{"unknown-key.toml", []string{"unknown-key.toml", "unknown key ca.lisen"}},
		{"malformed-value.toml", []string{"malformed-value.toml", "max_conns"}},
		{"syntax-error.toml", []string{"syntax-error.toml", "line 2", "table name"}},
		{"bad-address.toml", []string{"board.ca_addr", `"localhost" is not host:port`}},
		{"bad-port.toml", []string{"ca.listen", `port "99999"`}},
		{"unknown-algorithm.toml", []string{"ca.key_algorithm", `"dsa-1024" is not one of ecdsa-p256`}},
		{"negative-duration.toml", []string{"board.crl_refresh", "-5m0s must be a positive duration"}},
		{"integer-duration.toml", []string{"integer-duration.toml", "crl_refresh"}},
		{"bad-size.toml", []string{"max_submission", `"lots" is not a size`}},
		{"unknown-role.toml", []string{"role", `"adversary-in-chief" is not one of ca, board, student, adversary`}},
		{"unanchored-pattern.toml", []string{"ca.sid_pattern", "anchored"}},
		{"bad-fingerprint.toml", []string{"student.root_fingerprint", "not a SHA-256 fingerprint"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestRelativePathsResolveAgainstConfigDir(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(filepath.Join(dir, "relative-paths.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, got, want string }{
		{"ca.data_dir", cfg.CA.DataDir, filepath.Join(dir, "state/ca")},
		{"ca.roster_file", cfg.CA.RosterFile, "/etc/pkiboard/roster.txt"},
		{"board.data_dir", cfg.Board.DataDir, filepath.Join(dir, "state/board")},
		{"board.root_file", cfg.Board.RootFile, filepath.Join(dir, "trust/root.pem")},
		{"board.assignments_file", cfg.Board.AssignmentsFile, filepath.Join(dir, "course/assignments.toml")},
		{"board.roster_file", cfg.Board.RosterFile, "/etc/pkiboard/roster.csv"},
		{"student.data_dir (default)", cfg.Student.DataDir, filepath.Join(dir, "data/student")},
		{"role", cfg.Role, "board"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q want %q", tt.name, tt.got, tt.want)
		}
	}
	if got, want := cfg.Board.MaxSubmission, Size(256<<20); got != want {
		t.Errorf("board.max_submission: got %d want %d", got, want)
	}
	if got, want := cfg.Board.CRLRefresh.D(), 30*time.Second; got != want {
		t.Errorf("board.crl_refresh: got %v want %v", got, want)
	}
}

func TestSizeText(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		ok   bool
	}{
		{"512", 512, true},
		{"64KiB", 64 << 10, true},
		{"256MiB", 256 << 20, true},
		{"1GiB", 1 << 30, true},
		{"10B", 10, true},
		{"-1", 0, false},
		{"1.5GiB", 0, false},
		{"GiB", 0, false},
		{"99999999999GiB", 0, false},
	}
	for _, tt := range tests {
		var s Size
		err := s.UnmarshalText([]byte(tt.in))
		if (err == nil) != tt.ok || (tt.ok && s != tt.want) {
			t.Errorf("Size(%q): got %d, %v; want %d, ok=%v", tt.in, s, err, tt.want, tt.ok)
		}
		if tt.ok {
			out, _ := s.MarshalText()
			var back Size
			if err := back.UnmarshalText(out); err != nil || back != s {
				t.Errorf("Size(%q) round trip via %q: got %d, %v", tt.in, out, back, err)
			}
		}
	}
}

func TestParseFingerprint(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	colons := strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	for _, in := range []string{hex64, colons} {
		if b, err := parseFingerprint(in); err != nil || len(b) != 32 {
			t.Errorf("parseFingerprint(%q): got %x, %v", in, b, err)
		}
	}
	for _, in := range []string{"", "ab", hex64 + "ab", strings.Repeat("zz", 32)} {
		if _, err := parseFingerprint(in); err == nil {
			t.Errorf("parseFingerprint(%q): got no error", in)
		}
	}
}

func TestFingerprintText(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	colons := strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	tests := []struct {
		in   string
		want Fingerprint // nil for none
		ok   bool
	}{
		{"", nil, true},
		{hex64, bytes.Repeat([]byte{0xab}, 32), true},
		{colons, bytes.Repeat([]byte{0xab}, 32), true},
		{"ab", nil, false},
		{hex64 + "ab", nil, false},
		{strings.Repeat("zz", 32), nil, false},
	}
	for _, tt := range tests {
		var f Fingerprint
		err := f.UnmarshalText([]byte(tt.in))
		if (err == nil) != tt.ok || !bytes.Equal(f, tt.want) || (tt.want == nil && f != nil) {
			t.Errorf("Fingerprint(%q): got %x, %v; want %x, ok=%v", tt.in, f, err, tt.want, tt.ok)
		}
		if !tt.ok {
			if err == nil || !strings.Contains(err.Error(), "is not a SHA-256 fingerprint") {
				t.Errorf("Fingerprint(%q): got error %v, want one saying it is not a SHA-256 fingerprint", tt.in, err)
			}
			continue
		}
		out, _ := f.MarshalText()
		var back Fingerprint
		if err := back.UnmarshalText(out); err != nil || !bytes.Equal(back, f) {
			t.Errorf("Fingerprint(%q) round trip via %q: got %x, %v", tt.in, out, back, err)
		}
	}
}

func TestPatternText(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // "" for none
	}{
		{`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`, ""},
		{`^[0-9]{10}$`, ""},
		{"", `"" is not a valid regular expression`},
		{"^[0-9$", `"^[0-9$" is not a valid regular expression`},
		{"^(a{1000}){1000}$", "is not a valid regular expression"},
		{"[0-9]+", `"[0-9]+" must be anchored with ^ and $ so it matches the whole SID`},
		{"^[0-9]+", "must be anchored"},
		{"[0-9]+$", "must be anchored"},
	}
	for _, tt := range tests {
		var p Pattern
		err := p.UnmarshalText([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Pattern(%q): got %v, want an error containing %q", tt.in, err, tt.wantErr)
			}
			if p.Regexp() != nil {
				t.Errorf("Pattern(%q): refused, but holds %v", tt.in, p.Regexp())
			}
			continue
		}
		if err != nil || p.Regexp() == nil || p.String() != tt.in {
			t.Errorf("Pattern(%q): got %v, %v", tt.in, p.Regexp(), err)
			continue
		}
		out, _ := p.MarshalText()
		var back Pattern
		if err := back.UnmarshalText(out); err != nil || back.String() != tt.in {
			t.Errorf("Pattern(%q) round trip via %q: got %q, %v", tt.in, out, back.String(), err)
		}
	}
}

func TestSuitesText(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
		ok   bool
	}{
		{"aes-256-ctr-hmac-sha256", session.SuiteAES256CTRHMACSHA256, true},
		{"rc4-hmac-sha256", session.SuiteRC4HMACSHA256, true},
		{"AES-256-CTR-HMAC-SHA256", 0, false},
		{"0x0001", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		var s Suite
		err := s.UnmarshalText([]byte(tt.in))
		if (err == nil) != tt.ok || uint16(s) != tt.want {
			t.Errorf("Suite(%q): got 0x%04x, %v; want 0x%04x, ok=%v", tt.in, uint16(s), err, tt.want, tt.ok)
		}
		if !tt.ok {
			want := fmt.Sprintf("%q is not one of aes-256-gcm, aes-256-ctr-hmac-sha256, rc4-hmac-sha256", tt.in)
			if err == nil || err.Error() != want {
				t.Errorf("Suite(%q): got error %v want %q", tt.in, err, want)
			}
			continue
		}
		if out, _ := s.MarshalText(); string(out) != tt.in {
			t.Errorf("Suite(%q).MarshalText: got %q", tt.in, out)
		}
	}
	both := Suites{Suite(session.SuiteRC4HMACSHA256), Suite(session.SuiteAES256CTRHMACSHA256)}
	if got, want := both.IDs(), []uint16{session.SuiteRC4HMACSHA256, session.SuiteAES256CTRHMACSHA256}; !slices.Equal(got, want) {
		t.Errorf("IDs: got %v want %v", got, want)
	}
}

// TestValidateTypedValues checks that Validate refuses typed values that a
// program, not the file, set wrongly.
func TestValidateTypedValues(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"zero pattern", func(c *Config) { c.CA.SIDPattern = Pattern{} }, `ca.sid_pattern: "" is not a valid regular expression`},
		{"short fingerprint", func(c *Config) { c.Board.RootFingerprint = Fingerprint{0xab} }, `board.root_fingerprint: "ab" is not a SHA-256 fingerprint`},
		{"no suites", func(c *Config) { c.Student.Suites = nil }, "student.suites: must name at least one of aes-256-gcm, aes-256-ctr-hmac-sha256, rc4-hmac-sha256"},
		{"unknown suite", func(c *Config) { c.Student.Suites = Suites{4} }, `student.suites: "0x0004" is not one of aes-256-gcm, aes-256-ctr-hmac-sha256, rc4-hmac-sha256`},
		{"suite twice", func(c *Config) { c.Student.Suites = Suites{2, 2} }, `student.suites: "rc4-hmac-sha256" is listed twice`},
		{"no unproven connections", func(c *Config) { c.CA.MaxUnproven = 0 }, "ca.max_unproven: 0 is outside 1..max_conns (1024)"},
		{"more unproven than connections", func(c *Config) { c.Board.MaxUnproven = 2000 }, "board.max_unproven: 2000 is outside 1..max_conns (1024)"},
		{"negative burst", func(c *Config) { c.Board.SourceBurst = -1 }, "board.source_burst: -1 is outside 0..1048576"},
		{"no rate", func(c *Config) { c.CA.SourceRate = 0 }, "ca.source_rate: 0 must be a number of failures a second above 0"},
		{"partial quota under a submission", func(c *Config) { c.Board.PartialQuota = 1 << 20 }, "board.partial_quota: 1MiB is less than max_submission 1GiB"},
		{"no partial ttl", func(c *Config) { c.Board.PartialTTL = 0 }, "board.partial_ttl: 0s must be a positive duration"},
		{"console on every interface without TLS", func(c *Config) { c.Board.HTTPListen = "0.0.0.0:8003" }, `board.http_listen: "0.0.0.0:8003" is not a loopback address`},
		{"console on a network address without TLS", func(c *Config) { c.CA.HTTPListen = "192.0.2.7:8013" }, `ca.http_listen: "192.0.2.7:8013" is not a loopback address`},
		{"TLS certificate without its key", func(c *Config) { c.CA.HTTPTLSCert = "cert.pem" }, "ca.http_listen: set both the TLS certificate and its key"},
		{"TLS without an endpoint", func(c *Config) { c.Board.HTTPListen, c.Board.HTTPTLSCert = "", "c.pem" }, "board.http_tls_cert: is set, but http_listen is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate(): %v", err)
	}
	for _, ok := range []func(c *Config){
		func(c *Config) { c.Board.HTTPListen = "" },
		func(c *Config) { c.Board.HTTPListen = "[::1]:8003" },
		func(c *Config) {
			c.Board.HTTPListen, c.Board.HTTPTLSCert, c.Board.HTTPTLSKey = "0.0.0.0:8003", "c.pem", "k.pem"
		},
	} {
		c := Default()
		ok(c)
		if err := c.Validate(); err != nil {
			t.Errorf("Validate of %+v: %v", c.Board.HTTP, err)
		}
	}
}

// TestStudentDataDirEmptyIsUserDir checks that student.data_dir = "" puts the
// student's keys in the user's own directory, which each OS names (here
// through $XDG_CONFIG_HOME and $HOME, as on Linux), and that a system that
// names none is told to set one.
func TestStudentDataDirEmptyIsUserDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the environment that names the user's directory is Linux's here")
	}
	home := t.TempDir()
	tests := []struct {
		name, xdg, home string
		want, wantErr   string
	}{
		{"XDG_CONFIG_HOME", filepath.Join(home, "xdg"), home, filepath.Join(home, "xdg", "pkiboard", "student"), ""},
		{"HOME alone", "", home, filepath.Join(home, ".config", "pkiboard", "student"), ""},
		{"neither", "", "", "", `student.data_dir: "" means the user's own directory, which this system does not name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_CONFIG_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			cfg, err := Parse([]byte("[student]\ndata_dir = \"\"\n"), filepath.Join(t.TempDir(), "student.toml"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Student.DataDir != tt.want {
				t.Errorf("student.data_dir: got %q want %q", cfg.Student.DataDir, tt.want)
			}
		})
	}
}

// TestParseDuration: Go's units, and days and weeks as people write them.
func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true},
		{"72h", 72 * time.Hour, true},
		{"3d", 72 * time.Hour, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true},
		{"1w1d", 8 * 24 * time.Hour, true},
		{"3", 0, false},
		{"d", 0, false},
		{"3days", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
