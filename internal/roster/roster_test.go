package roster

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

var update = flag.Bool("update", false, "rewrite the seed corpus in testdata/fuzz")

var sidRE = regexp.MustCompile(`[0-9]{10}`)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Entry
		line int    // the bad line, 0 when the roster is valid
		msg  string // in the error
	}{
		{"empty", "", nil, 0, ""},
		{"one SID per line, as before", "# course roster\n1155000001\n1155000002  # late joiner\n\n1155000003\n",
			[]Entry{{SID: "1155000001"}, {SID: "1155000002"}, {SID: "1155000003"}}, 0, ""},
		{"three columns", "1155000001,Ada Lovelace,ada@example.edu\n",
			[]Entry{{"1155000001", "Ada Lovelace", "ada@example.edu"}}, 0, ""},
		{"mixed columns", "1155000001\n1155000002,Grace\n1155000003,,c@example.edu\n",
			[]Entry{{SID: "1155000001"}, {SID: "1155000002", Name: "Grace"}, {SID: "1155000003", Email: "c@example.edu"}}, 0, ""},
		{"header", "sid,name,email\n1155000001,A,a@example.edu\n", []Entry{{"1155000001", "A", "a@example.edu"}}, 0, ""},
		{"header any case, after comments", "# x\n\n SID , Name,EMAIL\n1155000001\n", []Entry{{SID: "1155000001"}}, 0, ""},
		{"header prefix", "sid\n1155000001\n", []Entry{{SID: "1155000001"}}, 0, ""},
		{"header only first", "1155000001\nsid,name,email\n", nil, 2, "SID pattern"},
		{"quoted comma", "1155000001,\"Hopper, Grace\",g@example.edu\n", []Entry{{"1155000001", "Hopper, Grace", "g@example.edu"}}, 0, ""},
		{"quoted hash is no comment", "1155000001,\"C# fan\"\n", []Entry{{SID: "1155000001", Name: "C# fan"}}, 0, ""},
		{"trailing comment after columns", "1155000001,Ada,a@example.edu # TA\n", []Entry{{"1155000001", "Ada", "a@example.edu"}}, 0, ""},
		{"spaces trimmed", "  1155000001 ,  Ada  , a@example.edu \n", []Entry{{"1155000001", "Ada", "a@example.edu"}}, 0, ""},
		{"CRLF", "sid,name\r\n1155000001,Ada\r\n", []Entry{{SID: "1155000001", Name: "Ada"}}, 0, ""},
		{"no final newline", "1155000001", []Entry{{SID: "1155000001"}}, 0, ""},
		{"UTF-8 name", "1155000001,Zoë Ĳsselmeer\n", []Entry{{SID: "1155000001", Name: "Zoë Ĳsselmeer"}}, 0, ""},

		{"bad SID", "1155000001\n115500000X\n", nil, 2, "SID pattern"},
		{"SID only partly matching", "11550000011\n", nil, 1, "SID pattern"},
		{"empty SID", ",Ada\n", nil, 1, "SID pattern"},
		{"duplicate names both lines", "1155000001\n# c\n1155000002\n1155000001,Again\n", nil, 4, "already on line 1"},
		{"four columns", "1155000001,A,a@example.edu,x\n", nil, 1, "4 columns"},
		{"email with a display name", "1155000001,A,Ada <a@example.edu>\n", nil, 1, "bare email"},
		{"email without a host", "1155000001,A,ada\n", nil, 1, "bare email"},
		{"email with spaces inside", "1155000001,A,a b@example.edu\n", nil, 1, "bare email"},
		{"bare quote", "1155000001,Ad\"a\n", nil, 1, "not a CSV line"},
		{"unterminated quote", "1155000001,\"Ada\n1155000002\n", nil, 1, "not a CSV line"},
		{"control character in name", "1155000001,A\x07da\n", nil, 1, "control character"},
		{"not UTF-8", "1155000001,\xff\n", nil, 1, "UTF-8"},
		{"name too long", "1155000001," + strings.Repeat("a", MaxFieldLen+1) + "\n", nil, 1, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in), sidRE)
			if tt.line == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
				return
			}
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("got %v (entries %+v), want a *LineError", err, got)
			}
			if le.Line != tt.line || !strings.Contains(le.Error(), tt.msg) {
				t.Fatalf("got %q, want line %d with %q", le.Error(), tt.line, tt.msg)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	if _, err := Parse(make([]byte, MaxFileSize+1), sidRE); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

// write replaces the roster at path and gives it the modification time mt,
// so that a change is seen whatever the file system's time resolution.
func write(t *testing.T, path, content string, mt time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "roster.csv")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write(t, path, "sid,name,email\n1155000001,Ada,ada@example.edu\n", t0)
	core, logs := observer.New(zap.InfoLevel)
	f, err := Load(path, sidRE, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := f.Lookup("1155000001"); !ok || e != (Entry{"1155000001", "Ada", "ada@example.edu"}) {
		t.Fatalf("got %+v %v, want Ada", e, ok)
	}
	if f.Contains("1155000002") {
		t.Fatal("1155000002 is on the roster before it is added")
	}

	// A change is taken on the next use.
	write(t, path, "1155000001,Ada,ada@example.edu\n1155000002,Grace\n", t0.Add(time.Second))
	if !f.Contains("1155000002") {
		t.Fatal("the added SID is not seen")
	}
	if got := f.Entries(); len(got) != 2 || got[1].Name != "Grace" {
		t.Fatalf("got %+v, want two entries", got)
	}

	// A bad change leaves the last good version in force, with one warning.
	write(t, path, "1155000001\n1155000001\n", t0.Add(2*time.Second))
	if !f.Contains("1155000002") || !f.Contains("1155000001") {
		t.Fatal("a bad roster replaced the good one")
	}
	f.Contains("1155000001")
	if n := logs.FilterMessage("the changed roster was not taken; the last version read stays in force").Len(); n != 1 {
		t.Fatalf("got %d warnings, want 1", n)
	}

	// The same size and a new time are a change too; so is a file removed and back.
	write(t, path, "1155000003\n1155000004\n", t0.Add(3*time.Second))
	if f.Contains("1155000001") || !f.Contains("1155000003") {
		t.Fatalf("got %+v, want the fixed roster", f.Entries())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if !f.Contains("1155000003") {
		t.Fatal("a removed roster emptied the list")
	}
	if logs.FilterMessage("cannot read the roster; the last version read stays in force").Len() == 0 {
		t.Fatal("no warning for a removed roster")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.csv"), sidRE, nil); err == nil || !strings.Contains(err.Error(), "roster_file") {
		t.Fatalf("got %v, want an error naming the setting", err)
	}
	bad := filepath.Join(dir, "bad.csv")
	write(t, bad, "1155000001\nnope\n", time.Now())
	if _, err := Load(bad, sidRE, nil); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("got %v, want line 2", err)
	}
}

// TestEntriesIsACopy checks that a caller cannot change the roster.
func TestEntriesIsACopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "roster.csv")
	write(t, path, "1155000001,Ada\n", time.Now())
	f, err := Load(path, sidRE, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Entries()[0].Name = "Eve"
	if e, _ := f.Lookup("1155000001"); e.Name != "Ada" {
		t.Fatalf("got %q, want Ada", e.Name)
	}
}
