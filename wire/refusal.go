package wire

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Refusal is this side's refusal of what the peer sent or asked: the code and
// the sentence to send the peer, and the local cause, if any. It is the one
// type of error for "we refuse": every error this package reports about the
// peer's bytes is a *Refusal (a frame too large, a truncated or malformed
// frame, an unknown or unexpected message, a bad file name, a file that does
// not match its header...), and so are the refusals of the packages above it,
// made with Refusef. [Answer] sends one to the peer.
type Refusal struct {
	Code Code
	Text string // a sentence for the peer's user; never a secret
	Err  error  // the cause, if any, for errors.Is and errors.As; never sent
}

// Refusef returns a *Refusal with code and a text formatted as by fmt.Sprintf.
func Refusef(code Code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Text: fmt.Sprintf(format, args...)}
}

// Error returns the code's name and the text, as in "token-used: the token was
// already used".
func (r *Refusal) Error() string { return r.Code.String() + ": " + r.Text }

// Unwrap returns the cause.
func (r *Refusal) Unwrap() error { return r.Err }

// Answer tells the peer on rw why this side stops, with the Error message err
// calls for, unless the peer is gone or refused first (PeerGone): for a
// *Refusal in err's chain, its code and text; for an expired deadline, code
// timeout and a fixed sentence; for any other error, code internal and a
// sentence that reveals nothing of it. It is best effort: it returns the write's
// error, which a caller about to close the connection may ignore.
func Answer(rw MessageReadWriter, err error) error {
	if err == nil || PeerGone(err) {
		return nil
	}
	var r *Refusal
	switch {
	case errors.As(err, &r):
		return rw.WriteMessage(&Error{Code: r.Code, Text: r.Text})
	case errors.Is(err, os.ErrDeadlineExceeded):
		return rw.WriteMessage(&Error{Code: CodeTimeout, Text: "too slow: the connection timed out"})
	default:
		return rw.WriteMessage(&Error{Code: CodeInternal, Text: "internal error; try again later"})
	}
}

// StorageReason names the kind of a storage failure for a peer: the system
// error's text ("no space left on device"), or "I/O error"; never a path.
func StorageReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "I/O error"
}
