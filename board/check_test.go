package board

import (
	"strings"
	"testing"
)

// TestOpenSaysHowItChecked: the first start runs the full check of board.db
// (none is recorded yet); the next, after a clean stop, skips it. The board
// logs what Checked says in its start line.
func TestOpenSaysHowItChecked(t *testing.T) {
	dir := t.TempDir()
	for i, want := range []struct {
		full   bool
		reason string
	}{{true, "no full check is recorded"}, {false, "the last stop was clean"}} {
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		c := s.Checked()
		s.Close()
		if c.Full != want.full || !strings.Contains(c.String(), want.reason) {
			t.Errorf("start %d: got %s want full %v (%q)", i+1, c, want.full, want.reason)
		}
	}
}
