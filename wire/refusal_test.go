package wire

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode Code
		wantText string
	}{
		{"refusal", Refusef(CodeCNMismatch, "CN %q is not SID %q", "b", "a"), CodeCNMismatch, `CN "b" is not SID "a"`},
		{"wrapped refusal", fmt.Errorf("enroll a: %w", Refusef(CodeWeakKey, "RSA-1024 is too small")), CodeWeakKey, "RSA-1024 is too small"},
		{"frame too large", &FrameTooLargeError{Size: 1 << 30, Max: 1 << 16}, CodeFrameTooLarge, "frame of 1073741824 bytes exceeds the maximum of 65536"},
		{"timeout", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), CodeTimeout, ""},
		{"internal hides detail", errors.New("open /var/lib/secret/key.pem: permission denied"), CodeInternal, "internal error; try again later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ErrorMessage(tt.err)
			if m.Code != tt.wantCode {
				t.Errorf("code: got %v want %v", m.Code, tt.wantCode)
			}
			if tt.wantText != "" && m.Text != tt.wantText {
				t.Errorf("text: got %q want %q", m.Text, tt.wantText)
			}
		})
	}
}

func TestRefusalError(t *testing.T) {
	r := Refusef(CodeTokenUsed, "the token was already used")
	if got, want := r.Error(), "token-used: the token was already used"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	if got := CodeFor(fmt.Errorf("x: %w", r)); got != CodeTokenUsed {
		t.Errorf("CodeFor: got %v want %v", got, CodeTokenUsed)
	}
}
