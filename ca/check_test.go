package ca

import (
	"strings"
	"testing"
)

// TestOpenSaysHowItCheckedTheStore: the CA's first start runs the full check
// of ca.db (none is recorded yet); the next, after a clean stop, skips it.
// The CA logs what StoreChecked says in its start line.
func TestOpenSaysHowItCheckedTheStore(t *testing.T) {
	c := newClock()
	o := testOptions(t, c)
	for i, want := range []struct {
		full   bool
		reason string
	}{{true, "no full check is recorded"}, {false, "the last stop was clean"}} {
		tc := open(t, o, c)
		got := tc.StoreChecked()
		tc.Close()
		if got.Full != want.full || !strings.Contains(got.String(), want.reason) {
			t.Errorf("start %d: got %s want full %v (%q)", i+1, got, want.full, want.reason)
		}
	}
}
