package wire

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"pkiboard/internal/vectors"
)

// The report-name mapping of PROTOCOL.md §5.4 on a table of awkward names:
// the test vector testdata/vectors/report-names.json, made by SafeName
// (-update rewrites it) and checked against the rule as the document words
// it.

const reportNamesVectors = "report-names.json"

// reportNamesFile is report-names.json.
type reportNamesFile struct {
	Description string           `json:"description"`
	Cases       []reportNameCase `json:"cases"`
}

// reportNameCase is one base name and the name it is sent under.
type reportNameCase struct {
	Note     string      `json:"note"`
	Base     vectors.Hex `json:"base"`                // the base name's bytes
	BaseText string      `json:"base_text,omitempty"` // the same, when they are UTF-8
	Name     string      `json:"name"`
}

// reportNameBases are the cases, with what each shows.
var reportNameBases = []struct {
	note string
	base string
}{
	{"a valid name is kept", "report.pdf"},
	{"every allowed byte", "Lab_2-final+v3.tar.gz"},
	{"a leading dot", ".hidden"},
	{"the name ..", ".."},
	{"the name .", "."},
	{"a leading dash", "-rf"},
	{"a leading dash, then another", "--help.txt"},
	{"a space", "my report.pdf"},
	{"non-ASCII: each byte of a two-byte character", "résumé.pdf"},
	{"non-ASCII: three-byte characters", "报告.docx"},
	{"non-ASCII: a four-byte character", "😀.txt"},
	{"a NUL and a tab", "a\x00b\tc.txt"},
	{"bytes that are not UTF-8", "\xff\xfe.txt"},
	{"characters some file systems refuse", `a:b*c?"d<e>f|g\h.txt`},
	{"exactly 128 bytes: kept", strings.Repeat("a", 124) + ".pdf"},
	{"129 bytes: the last 128 kept, the first of them made _", "b" + strings.Repeat("a", 124) + ".pdf"},
	{"200 bytes", strings.Repeat("x", 196) + ".pdf"},
	{"over 128 bytes, cut inside a two-byte character", "x" + strings.Repeat("é", 70) + ".txt"},
	{"over 128 bytes, a dot where it is cut", strings.Repeat("y", 10) + "." + strings.Repeat("z", 123) + ".md"},
	{"empty: the name report", ""},
}

func makeReportNames() *reportNamesFile {
	f := &reportNamesFile{Description: "The report-name mapping of PROTOCOL.md section 5.4 (Appendix: test vectors): a report's base name (bytes, in hex; base_text is the same when it is UTF-8) and the name the student sends it under."}
	for _, c := range reportNameBases {
		rc := reportNameCase{Note: c.note, Base: []byte(c.base), Name: SafeName(c.base, "report")}
		if utf8.ValidString(c.base) {
			rc.BaseText = c.base
		}
		f.Cases = append(f.Cases, rc)
	}
	return f
}

// specName is the mapping as PROTOCOL.md §5.4 words it: over 128 bytes,
// the last 128 are kept and the first of them becomes _; then every byte
// outside A-Z a-z 0-9 . _ - + becomes _, and so does a first . or -; an
// empty name becomes report.
func specName(base []byte) string {
	if len(base) == 0 {
		return "report"
	}
	b := bytes.Clone(base)
	if len(b) > 128 {
		b = b[len(b)-128:]
		b[0] = '_'
	}
	for i, c := range b {
		allowed := 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("._-+", c) >= 0
		if !allowed || i == 0 && (c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// checkReportNames checks a report-names.json against the rule as the
// document words it, and every name against ValidName.
func checkReportNames(data []byte) []string {
	var f reportNamesFile
	if err := vectors.Decode(data, &f); err != nil {
		return []string{err.Error()}
	}
	var bad []string
	for i, c := range f.Cases {
		if c.BaseText != "" && c.BaseText != string(c.Base) || c.BaseText == "" && len(c.Base) > 0 && utf8.Valid(c.Base) {
			bad = append(bad, fmt.Sprintf("cases[%d]: base_text is not base", i))
		}
		if want := specName(c.Base); c.Name != want {
			bad = append(bad, fmt.Sprintf("cases[%d]: name %q, the rule gives %q", i, c.Name, want))
		}
		if err := ValidName(c.Name); err != nil {
			bad = append(bad, err.Error())
		}
	}
	return bad
}

// TestVectorsReportNames makes report-names.json again and compares it
// with the committed file (-update rewrites it), and checks the committed
// file against the rule as PROTOCOL.md words it.
func TestVectorsReportNames(t *testing.T) {
	data, err := vectors.Marshal(makeReportNames())
	if err != nil {
		t.Fatal(err)
	}
	vectors.Check(t, reportNamesVectors, data, *update)
	if *update {
		return
	}
	for _, b := range checkReportNames(vectors.Read(t, reportNamesVectors)) {
		t.Error(b)
	}
}

// TestVectorsReportNamesEveryValueCounts changes each value of the
// committed file, one at a time, and checks that the comparison refuses
// it, and the rule's check too, but for the notes.
func TestVectorsReportNamesEveryValueCounts(t *testing.T) {
	data, err := vectors.Marshal(makeReportNames())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := vectors.Mutations(vectors.Read(t, reportNamesVectors))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if vectors.Compare(reportNamesVectors, data, m.Data) == nil {
			t.Errorf("a change of %s passes the comparison", m.Path)
		}
		if len(checkReportNames(m.Data)) == 0 && m.Path != "description" && !strings.HasSuffix(m.Path, ".note") {
			t.Errorf("the rule's check passes a change of %s", m.Path)
		}
	}
}
