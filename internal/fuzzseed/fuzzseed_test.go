package fuzzseed

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := [][]any{
		{[]byte("hello\x00\xff")},
		{[]byte{}, true},
		{uint8(2), "1155000001", []byte("csr"), ""},
		{"with (parens) and \"quotes\"", false},
	}
	for _, values := range tests {
		got, err := Decode([]byte(Encode(values...)))
		if err != nil {
			t.Fatalf("Decode(Encode(%v)): %v", values, err)
		}
		if !reflect.DeepEqual(got, values) {
			t.Errorf("round trip of %#v gave %#v", values, got)
		}
	}
}

func TestEncodeIsGoFuzzFormat(t *testing.T) {
	got := Encode([]byte("a\n"), uint8(7), "s", true)
	want := "go test fuzz v1\n[]byte(\"a\\n\")\nuint8(7)\nstring(\"s\")\nbool(true)\n"
	if got != want {
		t.Errorf("Encode gave\n%s\nwant\n%s", got, want)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, in := range []string{
		"",
		"go test fuzz v2\n[]byte(\"x\")\n",
		"go test fuzz v1\nint(3)\n",
		"go test fuzz v1\n[]byte(x)\n",
		"go test fuzz v1\nuint8(300)\n",
		"go test fuzz v1\nbool(maybe)\n",
	} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%q) succeeded", in)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Chdir(t.TempDir())
	seeds := map[string][]any{"a": {[]byte("1")}, "b": {[]byte("2")}}
	if err := Write("FuzzX", seeds); err != nil {
		t.Fatal(err)
	}
	if r := (&recorder{}); !r.check("FuzzX", seeds, true) {
		t.Errorf("a fresh corpus failed: %v", r.errs)
	}
	changed := map[string][]any{"a": {[]byte("1")}, "b": {[]byte("3")}, "c": {[]byte("4")}}
	r := &recorder{}
	if r.check("FuzzX", changed, true) {
		t.Fatal("a changed corpus passed")
	}
	if len(r.errs) != 2 || !strings.Contains(strings.Join(r.errs, "\n"), "out of date") {
		t.Errorf("want one out-of-date and one missing file, got %v", r.errs)
	}
	if r := (&recorder{}); !r.check("FuzzX", map[string][]any{"b": {[]byte("other randomness")}}, false) {
		t.Errorf("an inexact check compared contents: %v", r.errs)
	}
	if r := (&recorder{}); r.check("FuzzX", map[string][]any{"b": {[]byte("x"), true}}, false) {
		t.Error("an inexact check passed a file with fewer values than its seed")
	}
}

// recorder runs Check and keeps what it reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (r *recorder) check(target string, seeds map[string][]any, exact bool) bool {
	Check(r, target, seeds, exact, "rewrite it")
	return len(r.errs) == 0
}
