package wire

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// A Code says why a peer refused something (PROTOCOL.md §2.1). Programs act on the
// code; the text that comes with it is for humans.
type Code uint16

// The error codes of PROTOCOL.md §2.1. Codes from 16 up belong to the CA exchange
// and from 48 up to the board session; they are declared with those exchanges'
// messages.
const (
	CodeInternal          Code = 1  // the server failed; try again later
	CodeMalformed         Code = 2  // a frame or message could not be decoded
	CodeFrameTooLarge     Code = 3  // a frame header announced more than the receiver's maximum
	CodeUnknownMessage    Code = 4  // the type byte is not one the receiver knows
	CodeUnexpectedMessage Code = 5  // a known message arrived out of order
	CodeBadFileName       Code = 6  // a FileHeader name failed the rules of §3
	CodeFileTooLarge      Code = 7  // a FileHeader size exceeds the receiver's limit
	CodeFileMismatch      Code = 8  // the received bytes do not match the announced size or SHA-256
	CodeBadOffset         Code = 9  // a resume offset outside 0..size
	CodeBusy              Code = 10 // the server is at a limit (connections, or the sender's address); try again shortly
	CodeTimeout           Code = 11 // the peer was too slow
	CodeStorage           Code = 12 // the receiver could not store the data durably
)

// codeNames gives every error code of PROTOCOL.md (§2.1, §4 and §5) its
// kebab-case name.
var codeNames = map[Code]string{
	CodeInternal:          "internal",
	CodeMalformed:         "malformed",
	CodeFrameTooLarge:     "frame-too-large",
	CodeUnknownMessage:    "unknown-message",
	CodeUnexpectedMessage: "unexpected-message",
	CodeBadFileName:       "bad-file-name",
	CodeFileTooLarge:      "file-too-large",
	CodeFileMismatch:      "file-mismatch",
	CodeBadOffset:         "bad-offset",
	CodeBusy:              "busy",
	CodeTimeout:           "timeout",
	CodeStorage:           "storage",

	CodeBadCSR:             "bad-csr",
	CodeBadCSRSignature:    "bad-csr-signature",
	CodeCNMismatch:         "cn-mismatch",
	CodeBadSID:             "bad-sid",
	CodeWeakKey:            "weak-key",
	CodeTokenRequired:      "token-required",
	CodeTokenInvalid:       "token-invalid",
	CodeTokenExpired:       "token-expired",
	CodeTokenUsed:          "token-used",
	CodeNotOnRoster:        "not-on-roster",
	CodeBoardNotAuthorized: "board-not-authorized",
	CodeNotFound:           "not-found",
	CodeBadProfile:         "bad-profile",
	CodeWrongRoot:          "wrong-root",
	CodeBadRenewal:         "bad-renewal",
	CodeSameKey:            "same-key",

	CodeUnknownCA:              "unknown-ca",
	CodeCertExpired:            "cert-expired",
	CodeCertRevoked:            "cert-revoked",
	CodeSIDMismatch:            "sid-mismatch",
	CodeWrongUsage:             "wrong-usage",
	CodeSuiteNotAllowed:        "suite-not-allowed",
	CodeBadVersion:             "bad-version",
	CodeBadRecordMAC:           "bad-record-mac",
	CodeBadSubmissionSignature: "bad-submission-signature",
	CodeCRLUnavailable:         "crl-unavailable",
	CodeBadKeyShare:            "bad-key-share",
	CodeUnsupportedKey:         "unsupported-key",
	CodeBadTranscriptSignature: "bad-transcript-signature",
	CodeStaleHello:             "stale-hello",
	CodeBadHelloSignature:      "bad-hello-signature",
	CodeBoardRevoked:           "board-revoked",
	CodeStaleStatus:            "stale-status",
	CodeNameMismatch:           "name-mismatch",
	CodeKeyTransportFailed:     "key-transport-failed",
	CodeUnknownAssignment:      "unknown-assignment",
	CodeNotOpen:                "not-open",
	CodeClosed:                 "closed",
	CodeFileNotAccepted:        "file-not-accepted",
	CodeTooManyVersions:        "too-many-versions",
	CodeEmptyFile:              "empty-file",
	CodeQuotaExceeded:          "quota-exceeded",
}

// String returns the code's name, such as "bad-file-name", or "Code(N)" for a
// code PROTOCOL.md does not list.
func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// TypeError is the type byte of the [Error] message.
const TypeError Type = 0x01

// MaxErrorText is the longest Error text, in bytes, that a peer sends or accepts.
const MaxErrorText = 1024

// Error is the Error message (type 0x01, PROTOCOL.md §2.1): a peer's refusal. It is
// also an error, the one type of error that reports the peer's refusal, so that
// it can be returned as is; see [Expect]. A refusal of this side is a
// [Refusal], which [Answer] sends as an Error.
type Error struct {
	Code Code
	Text string // a sentence for a human; at most MaxErrorText bytes on the wire
}

// Type returns TypeError.
func (*Error) Type() Type { return TypeError }

// MarshalBody encodes the code and the text. A text that is not valid UTF-8 has its
// bad bytes replaced with U+FFFD, and a text longer than MaxErrorText is cut at the
// last whole character that fits: an Error is always sendable.
func (e *Error) MarshalBody(b *Builder) {
	b.U16(uint16(e.Code))
	b.String16(clipText(e.Text, MaxErrorText))
}

// UnmarshalBody decodes the code and the text, refusing a text longer than
// MaxErrorText.
func (e *Error) UnmarshalBody(p *Parser) {
	e.Code = Code(p.U16())
	e.Text = p.String16()
	if len(e.Text) > MaxErrorText {
		p.Fail(fmt.Errorf("text of %d bytes exceeds %d", len(e.Text), MaxErrorText))
	}
}

// Error describes the refusal as "peer refused: <name> (code N): <text>". Control
// and other non-printing characters of the peer's text are escaped, so that a
// hostile peer cannot forge lines in a log.
func (e *Error) Error() string {
	var sb strings.Builder
	sb.WriteString("peer refused: ")
	if name, ok := codeNames[e.Code]; ok {
		fmt.Fprintf(&sb, "%s (code %d)", name, e.Code)
	} else {
		fmt.Fprintf(&sb, "code %d", e.Code)
	}
	if e.Text != "" {
		sb.WriteString(": ")
		writePrintable(&sb, e.Text)
	}
	return sb.String()
}

// clipText returns s as valid UTF-8 of at most max bytes, cut on a character
// boundary.
func clipText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// writePrintable writes s to sb with every rune that is not graphic (or a plain
// space) escaped as in a Go string literal.
func writePrintable(sb *strings.Builder, s string) {
	for _, r := range s {
		if r == ' ' || (unicode.IsGraphic(r) && r != utf8.RuneError) {
			sb.WriteRune(r)
			continue
		}
		q := strconv.QuoteRuneToASCII(r)
		sb.WriteString(q[1 : len(q)-1])
	}
}

// CodeOf returns the code err carries: the code of the first *Refusal in its
// chain, or else of the peer's *Error in it; CodeTimeout for an expired
// deadline (os.ErrDeadlineExceeded); CodeInternal for any other error, and for
// nil.
func CodeOf(err error) Code {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	var peer *Error
	if errors.As(err, &peer) {
		return peer.Code
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return CodeTimeout
	}
	return CodeInternal
}

// PeerGone reports whether err means there is nobody to answer: the peer
// refused first (its *Error), or the connection ended (io.EOF, or
// io.ErrUnexpectedEOF inside a frame) or is closed or broken.
func PeerGone(err error) bool {
	var peer *Error
	return errors.As(err, &peer) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
