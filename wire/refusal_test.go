package wire

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
)

// TestAnswer checks what Answer sends the peer: nothing when the peer is gone
// or refused first; a refusal's code and text; a timeout for an expired
// deadline; and for any other error internal, with nothing of the error in it.
func TestAnswer(t *testing.T) {
	_, empty := Unmarshal(nil)
	_, unexpected := Expect[*FileHeader](&Data{Bytes: []byte{1}}, nil)
	tests := []struct {
		name     string
		err      error
		wantCode Code   // 0: nothing sent
		wantText string // checked if not empty
	}{
		{"nil", nil, 0, ""},
		{"eof", io.EOF, 0, ""},
		{"truncated", truncated("payload", 1, 9), 0, ""},
		{"peer refused", &Error{Code: CodeBusy}, 0, ""},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), 0, ""},
		{"refusal", Refusef(CodeCNMismatch, "CN %q is not SID %q", "b", "a"), CodeCNMismatch, `CN "b" is not SID "a"`},
		{"wrapped refusal", fmt.Errorf("enroll a: %w", Refusef(CodeWeakKey, "RSA-1024 is too small")), CodeWeakKey, "RSA-1024 is too small"},
		{"frame too large", frameTooLarge(1<<30, 1<<16, false), CodeFrameTooLarge, "frame of 1073741824 bytes exceeds the maximum of 65536"},
		{"first frame too large", frameTooLarge(13462, 13461, true), CodeFrameTooLarge, "first frame of 13462 bytes exceeds the maximum of 13461, the largest legal first message"},
		{"malformed", empty, CodeMalformed, "empty frame (a message needs at least its type byte)"},
		{"unexpected", unexpected, CodeUnexpectedMessage, "got a Data message where a FileHeader was expected"},
		{"refusal with a cause", &Refusal{Code: CodeStorage, Text: "disk full", Err: &os.PathError{Op: "write", Path: "/secret/path", Err: syscall.ENOSPC}}, CodeStorage, "disk full"},
		{"timeout", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), CodeTimeout, "too slow: the connection timed out"},
		{"internal hides detail", errors.New("open /var/lib/secret/key.pem: permission denied"), CodeInternal, "internal error; try again later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &msgQueue{}
			if err := Answer(q, tt.err); err != nil {
				t.Fatalf("Answer: %v", err)
			}
			if tt.wantCode == 0 {
				if len(q.out) != 0 {
					t.Errorf("sent %v, want nothing", q.out[0])
				}
				return
			}
			if len(q.out) != 1 {
				t.Fatalf("sent %d messages, want one Error", len(q.out))
			}
			m, ok := q.out[0].(*Error)
			if !ok {
				t.Fatalf("sent a %v, want an Error", q.out[0].Type())
			}
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
	if got := CodeOf(fmt.Errorf("x: %w", r)); got != CodeTokenUsed {
		t.Errorf("CodeOf: got %v want %v", got, CodeTokenUsed)
	}
	cause := syscall.EROFS
	wrapped := fmt.Errorf("x: %w", &Refusal{Code: CodeStorage, Text: "read-only", Err: cause})
	if !errors.Is(wrapped, cause) {
		t.Errorf("a refusal's cause is not found in its chain")
	}
	if StorageReason(wrapped) != "read-only file system" {
		t.Errorf("StorageReason: got %q, want the system error's text", StorageReason(wrapped))
	}
}
