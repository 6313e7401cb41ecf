package roster

import (
	"strings"
	"testing"

	"pkiboard/internal/fuzzseed"
)

// rosterSeeds start FuzzParse from valid rosters of each shape and from the
// edges of the format.
var rosterSeeds = fuzzseed.Bytes(map[string][]byte{
	"one-per-line":  []byte("# course roster\n1155000001\n1155000002  # late joiner\n\n1155000003\n"),
	"three-columns": []byte("sid,name,email\n1155000001,Ada Lovelace,ada@example.edu\n1155000002,\"Hopper, Grace\"\n"),
	"crlf":          []byte("SID,Name\r\n1155000001,Zoë\r\n"),
	"quoted-hash":   []byte("1155000001,\"C# \"\"fan\"\"\",a@example.edu # TA\n"),
	"duplicate":     []byte("1155000001\n1155000001\n"),
	"bad-email":     []byte("1155000001,A,Ada <a@example.edu>\n"),
	"open-quote":    []byte("1155000001,\"Ada\n"),
})

func TestParseCorpus(t *testing.T) {
	if *update {
		if err := fuzzseed.Write("FuzzParse", rosterSeeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzParse", rosterSeeds, true, "run go test ./internal/roster -run TestParseCorpus -update")
}

// FuzzParse checks that Parse never panics, and that what it accepts keeps
// its rules: every SID matches the pattern and appears once, no field holds a
// line break or surrounding spaces, and an entry's fields survive being
// written back as CSV and parsed again.
func FuzzParse(f *testing.F) {
	for _, s := range rosterSeeds {
		f.Add(s[0].([]byte))
	}
	full := anchor(sidRE)
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Parse(data, sidRE)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		var b strings.Builder
		for _, e := range entries {
			if !full.MatchString(e.SID) || seen[e.SID] {
				t.Fatalf("SID %q accepted", e.SID)
			}
			seen[e.SID] = true
			for _, v := range []string{e.Name, e.Email} {
				if strings.ContainsAny(v, "\r\n") || strings.TrimSpace(v) != v {
					t.Fatalf("field %q accepted", v)
				}
			}
			b.WriteString(e.SID + "," + quote(e.Name) + "," + quote(e.Email) + "\n")
		}
		again, err := Parse([]byte(b.String()), sidRE)
		if err != nil || len(again) != len(entries) {
			t.Fatalf("written back as\n%s\nparsed to %+v, %v", b.String(), again, err)
		}
		for i := range again {
			if again[i] != entries[i] {
				t.Fatalf("got %+v, want %+v", again[i], entries[i])
			}
		}
	})
}

// quote writes v as a quoted CSV field.
func quote(v string) string { return `"` + strings.ReplaceAll(v, `"`, `""`) + `"` }
