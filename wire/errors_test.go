package wire

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

func TestCodeString(t *testing.T) {
	want := map[Code]string{
		1: "internal", 2: "malformed", 3: "frame-too-large", 4: "unknown-message",
		5: "unexpected-message", 6: "bad-file-name", 7: "file-too-large", 8: "file-mismatch",
		9: "bad-offset", 10: "busy", 11: "timeout", 12: "storage",
		0: "Code(0)", 13: "Code(13)", 999: "Code(999)",
	}
	for c, name := range want {
		if got := c.String(); got != name {
			t.Errorf("Code(%d).String(): got %q, want %q", c, got, name)
		}
	}
}

func TestCodeOf(t *testing.T) {
	_, malformed := Unmarshal([]byte{byte(TypeFileOffset), 1})
	_, empty := Unmarshal(nil)
	_, unknown := Unmarshal([]byte{0x99})
	_, unexpected := Expect[*FileHeader](&Data{Bytes: []byte{1}}, nil)
	_, encode := Marshal(&FileHeader{Name: strings.Repeat("n", 256)})
	for _, tc := range []struct {
		name string
		err  error
		want Code
	}{
		{"nil", nil, CodeInternal},
		{"plain", errors.New("disk on fire"), CodeInternal},
		{"encode", fmt.Errorf("x: %w", encode), CodeInternal},
		{"frame too large", frameTooLarge(10, 5, false), CodeFrameTooLarge},
		{"wrapped frame too large", fmt.Errorf("reading: %w", frameTooLarge(10, 5, false)), CodeFrameTooLarge},
		{"malformed", malformed, CodeMalformed},
		{"empty frame", empty, CodeMalformed},
		{"truncated", truncated("header", 1, 4), CodeMalformed},
		{"unknown type", unknown, CodeUnknownMessage},
		{"unexpected", unexpected, CodeUnexpectedMessage},
		{"bad name", ValidName("../x"), CodeBadFileName},
		{"refusal", Refusef(CodeFileTooLarge, "too big"), CodeFileTooLarge},
		{"storage", &Refusal{Code: CodeStorage, Text: "disk full", Err: syscall.ENOSPC}, CodeStorage},
		{"a refusal's own code before its cause's", &Refusal{Code: CodeMalformed, Err: os.ErrDeadlineExceeded}, CodeMalformed},
		{"deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), CodeTimeout},
		{"peer error", &Error{Code: CodeBusy}, CodeBusy},
		{"another package's refusal", fmt.Errorf("enrolling: %w", Refusef(CodeBadCSRSignature, "no")), CodeBadCSRSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CodeOf(tc.err); got != tc.want {
				t.Errorf("CodeOf(%v): got %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestErrorMessageText(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    *Error
		want string
	}{
		{"known", &Error{Code: CodeBadFileName, Text: "name begins with '.'"}, "peer refused: bad-file-name (code 6): name begins with '.'"},
		{"no text", &Error{Code: CodeBusy}, "peer refused: busy (code 10)"},
		{"unknown code", &Error{Code: 4242, Text: "who knows"}, "peer refused: code 4242: who knows"},
		{"control characters", &Error{Code: CodeInternal, Text: "a\nFAKE LOG LINE\x1b[31m"}, `peer refused: internal (code 1): a\nFAKE LOG LINE\x1b[31m`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestErrorTextClipped(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want string
	}{
		{"short", "fine", "fine"},
		{"exact", strings.Repeat("x", MaxErrorText), strings.Repeat("x", MaxErrorText)},
		{"long ascii", strings.Repeat("x", MaxErrorText+10), strings.Repeat("x", MaxErrorText)},
		// 1023 bytes, then a 2-byte character that would end at byte 1025.
		{"cut before a character", strings.Repeat("x", MaxErrorText-1) + "é", strings.Repeat("x", MaxErrorText-1)},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := Marshal(&Error{Code: CodeInternal, Text: tc.text})
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			m, err := Unmarshal(enc)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			got := m.(*Error).Text
			if got != tc.want {
				t.Errorf("got text of %d bytes %.40q, want %d bytes %.40q", len(got), got, len(tc.want), tc.want)
			}
			if !utf8.ValidString(got) || len(got) > MaxErrorText {
				t.Errorf("got an invalid text of %d bytes", len(got))
			}
		})
	}
}

func TestPeerGone(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"the peer's Error", fmt.Errorf("session: %w", &Error{Code: CodeBusy}), true},
		{"EOF", io.EOF, true},
		{"truncated frame", fmt.Errorf("read: %w", truncated("payload", 1, 9)), true},
		{"closed", &net.OpError{Op: "read", Err: net.ErrClosed}, true},
		{"broken pipe", &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{"reset", os.NewSyscallError("read", syscall.ECONNRESET), true},
		{"malformed", &Refusal{Code: CodeMalformed, Text: "bad"}, false},
		{"a refusal of ours", Refusef(CodeBadVersion, "no"), false},
		{"a timeout", os.ErrDeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := PeerGone(tt.err); got != tt.want {
			t.Errorf("%s: PeerGone(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
