package wire

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// protocolDoc is the specification this package implements.
const protocolDoc = "../PROTOCOL.md"

// docTables returns the rows of every Markdown table in the document at path
// whose header row begins with the given column names, each row as its cells
// with surrounding spaces and backquotes removed, and the line it is on.
func docTables(t *testing.T, path string, columns ...string) (rows [][]string, lines []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inTable, matching := false, false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i, c := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(c), "`")
		}
		switch {
		case !inTable: // the header row
			inTable = true
			matching = len(cells) >= len(columns)
			for i, c := range columns {
				matching = matching && cells[i] == c
			}
		case strings.Trim(line, "|-: ") == "": // the separator row
		case matching:
			rows = append(rows, cells)
			lines = append(lines, n)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows, lines
}

// TestProtocolMessageTypes checks that the table of messages and
// PROTOCOL.md's tables of message types ("| type | name | ...") agree both
// ways: every documented type is in the table under the same name, and every
// message in the table is documented.
func TestProtocolMessageTypes(t *testing.T) {
	rows, lines := docTables(t, protocolDoc, "type", "name")
	if len(rows) == 0 {
		t.Fatalf("%s has no table of message types", protocolDoc)
	}
	documented := map[Type]string{}
	for i, row := range rows {
		v, err := strconv.ParseUint(row[0], 0, 8)
		if err != nil {
			t.Errorf("%s:%d: type %q: %v", protocolDoc, lines[i], row[0], err)
			continue
		}
		typ, name := Type(v), row[1]
		// A type may appear in two tables (§5.4 lists the requests again,
		// with their answers), under one name.
		if prev, ok := documented[typ]; ok && prev != name {
			t.Errorf("%s:%d: type 0x%02x is listed twice, as %s and %s", protocolDoc, lines[i], v, prev, name)
		}
		documented[typ] = name
		switch info := messages[typ]; {
		case info.newMsg == nil:
			t.Errorf("%s:%d: type 0x%02x (%s) is not in the table of messages", protocolDoc, lines[i], v, name)
		case info.name != name:
			t.Errorf("%s:%d: type 0x%02x is %s in the document and %s in the table", protocolDoc, lines[i], v, name, info.name)
		}
	}
	for i, info := range messages {
		if info.newMsg != nil && documented[Type(i)] == "" {
			t.Errorf("message %s (0x%02x) is not in any table of message types in %s", info.name, i, protocolDoc)
		}
	}
}

// TestProtocolCodes checks that the table of error codes and PROTOCOL.md's
// tables of codes ("| code | name | ...") agree both ways, as
// TestProtocolMessageTypes does for messages.
func TestProtocolCodes(t *testing.T) {
	rows, lines := docTables(t, protocolDoc, "code", "name")
	if len(rows) == 0 {
		t.Fatalf("%s has no table of error codes", protocolDoc)
	}
	documented := map[Code]bool{}
	for i, row := range rows {
		v, err := strconv.ParseUint(row[0], 10, 16)
		if err != nil {
			t.Errorf("%s:%d: code %q: %v", protocolDoc, lines[i], row[0], err)
			continue
		}
		code, name := Code(v), row[1]
		if documented[code] {
			t.Errorf("%s:%d: code %d is listed twice", protocolDoc, lines[i], v)
		}
		documented[code] = true
		switch got, ok := codeNames[code]; {
		case !ok:
			t.Errorf("%s:%d: code %d (%s) is not in the table of codes", protocolDoc, lines[i], v, name)
		case got != name:
			t.Errorf("%s:%d: code %d is %s in the document and %s in the table", protocolDoc, lines[i], v, name, got)
		}
	}
	for code, name := range codeNames {
		if !documented[code] {
			t.Errorf("code %d (%s) is not in any table of error codes in %s", code, name, protocolDoc)
		}
	}
}
