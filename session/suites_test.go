package session

import (
	"slices"
	"testing"
)

// TestSuiteTable checks the suite table against PROTOCOL.md §5.1: the ids, the
// names, and which suites the board allows without AllowRC4.
func TestSuiteTable(t *testing.T) {
	tests := []struct {
		id               uint16
		name             string
		allowedByDefault bool
	}{
		{0x0003, "aes-256-gcm", true},
		{0x0001, "aes-256-ctr-hmac-sha256", true},
		{0x0002, "rc4-hmac-sha256", false},
	}
	var ids []uint16
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SuiteName(tt.id); got != tt.name {
				t.Errorf("SuiteName(0x%04x): got %q want %q", tt.id, got, tt.name)
			}
			if got, ok := SuiteByName(tt.name); !ok || got != tt.id {
				t.Errorf("SuiteByName(%q): got 0x%04x, %v want 0x%04x, true", tt.name, got, ok, tt.id)
			}
			s := suiteByID(tt.id)
			if s == nil {
				t.Fatalf("suiteByID(0x%04x): got nil", tt.id)
			}
			if s.allowedByDefault != tt.allowedByDefault {
				t.Errorf("allowedByDefault: got %v want %v", s.allowedByDefault, tt.allowedByDefault)
			}
		})
		ids = append(ids, tt.id)
	}
	if got := Suites(); !slices.Equal(got, ids) {
		t.Errorf("Suites(): got %v want %v", got, ids)
	}
	if got, want := []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}, ids; !slices.Equal(got, want) {
		t.Errorf("suite constants: got %v want %v", got, want)
	}
	if got, want := SuiteName(0x0004), "0x0004"; got != want {
		t.Errorf("SuiteName(0x0004): got %q want %q", got, want)
	}
	if _, ok := SuiteByName("0x0001"); ok {
		t.Error(`SuiteByName("0x0001"): got ok, want an unknown name`)
	}
}
