package wire

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// field is one field of a message layout: its name and the most bytes it
// takes on the wire (length prefix included).
type field struct {
	name string
	max  int
}

// firstMessages are the largest first messages of PROTOCOL.md version 2, field
// by field as §4.2 and §5.1 define them, with the maxima those sections give.
var firstMessages = []struct {
	daemon string
	limit  int
	fields []field
}{
	{"CA", MaxFirstFrameCA, []field{ // EnrollRequest, §4.2
		{"type", 1},
		{"version: u16", 2},
		{"profile: u8", 1},
		{"sid: string8, 1..64", 1 + 64},
		{"csr: bytes16, 1..16384", 2 + 16384},
		{"root: fixed[32]", 32},
		{"auth: u8", 1},
		{"token_key: bytes8, 32", 1 + 32},
		{"certificate: bytes16, 1..8192", 2 + 8192},
		{"signature: bytes16, 1..1024", 2 + 1024},
	}},
	{"board", MaxFirstFrameBoard, []field{ // ClientHello, §5.1
		{"type", 1},
		{"version: u16", 2},
		{"sid: string8, 1..64", 1 + 64},
		{"certificate: bytes16, 1..8192", 2 + 8192},
		{"random: fixed[32]", 32},
		{"time: u64", 8},
		{"suites: list8<u16>, 1..16", 1 + 2*16},
		{"kem: u16", 2},
		{"kem_public: bytes16, at most 4096", 2 + 4096},
		{"signature: bytes16, 1..1024", 2 + 1024},
	}},
}

// TestMaxFirstFrameIsTheSumOfTheFields checks the first-frame limits against
// the layouts of PROTOCOL.md and against the figures its section 1 states.
func TestMaxFirstFrameIsTheSumOfTheFields(t *testing.T) {
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	// "the sum of its fields' maxima — 25 741 bytes at the CA (an
	// EnrollRequest), 13 461 at the board (a ClientHello)"
	m := regexp.MustCompile(`(\d[\d ]*\d) bytes at the CA \(an\s+EnrollRequest\), (\d[\d ]*\d) at the board`).FindSubmatch(doc)
	if m == nil {
		t.Fatal("PROTOCOL.md §1 no longer states the first-frame limits where this test looks for them")
	}
	stated := map[string]int{}
	for i, daemon := range []string{"CA", "board"} {
		n, err := strconv.Atoi(strings.ReplaceAll(string(m[i+1]), " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		stated[daemon] = n
	}
	for _, fm := range firstMessages {
		sum := 0
		for _, f := range fm.fields {
			sum += f.max
		}
		if sum != fm.limit {
			t.Errorf("%s: the fields sum to %d, the constant is %d", fm.daemon, sum, fm.limit)
		}
		if stated[fm.daemon] != fm.limit {
			t.Errorf("%s: PROTOCOL.md §1 states %d, the constant is %d", fm.daemon, stated[fm.daemon], fm.limit)
		}
	}
}

// TestLargestFirstMessagesFit marshals the largest first message each daemon
// may receive, from the message definitions of this package with every
// field at the most its decoder accepts, and checks that it decodes and fits
// the daemon's first-frame limit: no legal first message is refused.
func TestLargestFirstMessagesFit(t *testing.T) {
	fill := func(n int) []byte { return bytes.Repeat([]byte{'a'}, n) }
	suites := make([]uint16, MaxSuites)
	tests := []struct {
		name  string
		limit int
		m     Message
	}{
		// A renewal: the largest of the three authorizations.
		{"EnrollRequest", MaxFirstFrameCA, &EnrollRequest{Version: 2, Profile: ProfileStudent, SID: string(fill(MaxSIDLen)), CSR: fill(MaxCSRLen),
			Auth: AuthRenewal, Certificate: fill(MaxCertLen), Signature: fill(MaxSignatureLen)}},
		{"Fetch", MaxFirstFrameCA, &Fetch{Version: 2, Name: string(fill(255))}},
		{"WatchRequest", MaxFirstFrameCA, &WatchRequest{Version: 2, Certificate: fill(MaxCertLen)}},
		// Version 2 carries exactly one certificate (PROTOCOL.md §5.1).
		{"ClientHello", MaxFirstFrameBoard, &ClientHello{Version: 2, SID: string(fill(MaxSIDLen)), Certificate: fill(MaxCertLen),
			Suites: suites, KEM: KEMXWing, KEMPublic: fill(MaxKeyShareLen), Signature: fill(MaxSignatureLen)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Marshal(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Unmarshal(p); err != nil {
				t.Fatalf("the largest %s does not decode: %v", tt.name, err)
			}
			if len(p) > tt.limit {
				t.Errorf("the largest %s is %d bytes, over the first-frame limit %d", tt.name, len(p), tt.limit)
			}
		})
	}
}
