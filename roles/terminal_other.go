//go:build !windows

package roles

import "os"

// isTerminal reports whether f is a terminal, on which the student draws its
// progress bar: a character device other than the null device (2>/dev/null
// is a character device too).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}
