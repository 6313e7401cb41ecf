package wire

import (
	"errors"
	"fmt"
)

// Refusal is a local decision to refuse a peer's request, with the code and the
// sentence to send it. Servers return Refusals from their checks and turn them
// into an Error message at the edge, with Refuse.
type Refusal struct {
	Code Code
	Text string // a sentence for the peer's user; never a secret
}

// Refusef returns a *Refusal with code and a text formatted as by fmt.Sprintf.
func Refusef(code Code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Text: fmt.Sprintf(format, args...)}
}

// Error returns the text with the code's name.
func (r *Refusal) Error() string { return fmt.Sprintf("%s: %s", r.Code, r.Text) }

// WireCode returns the code, for CodeFor.
func (r *Refusal) WireCode() Code { return r.Code }

// ErrorMessage returns the Error message that tells the peer about err: the
// code from CodeFor and, for a *Refusal, its text; for other local errors a
// text that reveals nothing internal.
func ErrorMessage(err error) *Error {
	var r *Refusal
	if errors.As(err, &r) {
		return &Error{Code: r.Code, Text: r.Text}
	}
	code := CodeFor(err)
	if code == CodeInternal {
		return &Error{Code: code, Text: "internal error; try again later"}
	}
	return &Error{Code: code, Text: bareText(err)}
}
