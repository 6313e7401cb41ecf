package roles

import (
	"os"
	"syscall"
)

// isTerminal reports whether f is a console, on which the student draws its
// progress bar: GetConsoleMode succeeds on a console handle only (NUL and a
// pipe, such as the one of Git Bash's terminal, are no console; a bar there
// would print its carriage returns as text).
func isTerminal(f *os.File) bool {
	var mode uint32
	return syscall.GetConsoleMode(syscall.Handle(f.Fd()), &mode) == nil
}
