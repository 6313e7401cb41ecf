package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"pkiboard/internal/fuzzseed"
	"pkiboard/session"
)

var update = flag.Bool("update", false, "rewrite the seed corpora under testdata/fuzz/")

// fuzzPath is the file name FuzzParse gives Parse: errors must name it.
const fuzzPath = "/fuzz/pkiboard.toml"

// parseSeeds are the committed seed corpus of FuzzParse: hostile documents.
// go test -run TestFuzzCorpus -update writes them under
// testdata/fuzz/FuzzParse. FuzzParse also starts from the shipped config.toml
// and every fixture in testdata (fileSeeds), read as they are now.
func parseSeeds() map[string][]byte {
	return map[string][]byte{
		"empty":              {},
		"role-only":          []byte("role = \"ca\"\n"),
		"nul-byte":           []byte("role = \"c\x00a\"\n"),
		"deep-tables":        []byte(strings.Repeat("[a]\n", 3) + "[a.b.c.d.e.f]\nx = 1\n"),
		"nested-arrays":      []byte("[student]\nsuites = " + strings.Repeat("[", 64) + strings.Repeat("]", 64) + "\n"),
		"huge-size":          []byte("[board]\nmax_submission = \"9223372036854775807GiB\"\n"),
		"huge-duration":      []byte("[ca]\nroot_validity = \"9999999999h\"\n"),
		"zero-conns":         []byte("[ca]\nmax_conns = 0\n"),
		"negative-conns":     []byte("[board]\nmax_conns = -1\n"),
		"pattern-catastroph": []byte("[ca]\nsid_pattern = \"^(a+)+$\"\n"),
		"pattern-huge-rep":   []byte("[ca]\nsid_pattern = \"^(a{1000}){1000}$\"\n"),
		"fingerprint-colons": []byte("[student]\nroot_fingerprint = \"" + strings.Repeat("AB:", 31) + "AB\"\n"),
		"duplicate-key":      []byte("[ca]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n"),
		"inline-table":       []byte("ca = { listen = \"127.0.0.1:1\" }\n"),
		"wrong-type-section": []byte("ca = 5\n"),
		"all-sections-min":   []byte("role = \"board\"\n[log]\n[ca]\n[board]\nmax_frame = 65569\n[student]\nsuites = [\"rc4-hmac-sha256\"]\n"),
	}
}

// fileSeeds returns the shipped config.toml and every fixture in testdata.
func fileSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.toml"))
	if err != nil {
		tb.Fatal(err)
	}
	var seeds [][]byte
	for _, path := range append(paths, filepath.Join("..", "..", "config.toml")) {
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	return seeds
}

// TestFuzzCorpus checks (or, with -update, writes) the committed seed corpus.
func TestFuzzCorpus(t *testing.T) {
	seeds := fuzzseed.Bytes(parseSeeds())
	if *update {
		if err := fuzzseed.Write("FuzzParse", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzParse", seeds, true, "run go test ./config -run TestFuzzCorpus -update")
}

// FuzzParse feeds arbitrary bytes to Parse. Whatever it accepts, the roles use
// as the typed values it decoded, without checking again: the SID pattern compiles,
// fingerprints parse, suites are known, limits are positive, paths are
// absolute. Whatever it refuses, it refuses with an error naming the file.
func FuzzParse(f *testing.F) {
	for _, seed := range fileSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, fuzzPath)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config "+fuzzPath+": ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if cfg.Path != fuzzPath {
			t.Fatalf("Path = %q, want %q", cfg.Path, fuzzPath)
		}
		// main validates again once the flags are applied: a config Parse
		// accepted must pass again unchanged (Validate must not, say, resolve
		// a path twice).
		before := *cfg
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Validate refuses, the second time, a config Parse accepted: %v", err)
		}
		if !reflect.DeepEqual(before, *cfg) {
			t.Fatalf("Validate changed an accepted config:\n%+v\n%+v", before, *cfg)
		}
		if re := cfg.CA.SIDPattern.Regexp(); re == nil {
			t.Fatalf("accepted sid_pattern %q is not compiled", cfg.CA.SIDPattern)
		} else if _, err := regexp.Compile(re.String()); err != nil {
			t.Fatalf("accepted sid_pattern %q does not compile: %v", cfg.CA.SIDPattern, err)
		}
		for key, fp := range map[string]Fingerprint{"board.root_fingerprint": cfg.Board.RootFingerprint, "student.root_fingerprint": cfg.Student.RootFingerprint} {
			if len(fp) != 0 && len(fp) != 32 {
				t.Fatalf("accepted %s %x is not a SHA-256 fingerprint", key, []byte(fp))
			}
		}
		for _, suite := range cfg.Student.Suites {
			if _, ok := session.SuiteByName(session.SuiteName(uint16(suite))); !ok {
				t.Fatalf("accepted suite %s is unknown to the session", suite)
			}
		}
		for _, l := range []Limits{cfg.CA.Limits, cfg.Board.Limits} {
			if l.MaxConns < 1 || l.MaxFrame < 4<<10 || l.ReadTimeout <= 0 || l.WriteTimeout <= 0 ||
				l.HandshakeTimeout <= 0 || l.IdleTimeout <= 0 || l.ShutdownTimeout <= 0 {
				t.Fatalf("accepted limits %+v", l)
			}
		}
		if cfg.Board.MaxFrame < MinBoardFrame || cfg.Board.MaxSubmission <= 0 {
			t.Fatalf("accepted board max_frame %d, max_submission %d", cfg.Board.MaxFrame, cfg.Board.MaxSubmission)
		}
		for _, p := range []string{cfg.CA.DataDir, cfg.Board.DataDir, cfg.Student.DataDir} {
			if !filepath.IsAbs(p) {
				t.Fatalf("data directory %q is not absolute", p)
			}
		}
		for _, p := range []string{cfg.CA.KeyPassphraseFile, cfg.CA.RosterFile, cfg.Board.RootFile, cfg.Board.EnrollTokenFile, cfg.Student.TokenFile} {
			if p != "" && !filepath.IsAbs(p) {
				t.Fatalf("file %q is not absolute", p)
			}
		}
	})
}
