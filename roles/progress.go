package roles

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Screen is the student's standard error when it may be a terminal: the one
// writer of the log, the course's lines (when standard output is the same
// terminal) and, while uploads run, their progress bars. While bars are
// drawn, what is written goes above them at the next redraw, so that lines
// written by several goroutines never tear a bar.
type Screen struct {
	f *os.File

	mu sync.Mutex
	p  *mpb.Progress // while bars are drawn; nil otherwise
}

// NewScreen returns the Screen of f (os.Stderr).
func NewScreen(f *os.File) *Screen { return &Screen{f: f} }

// Write writes b above the bars while they are drawn, to the file otherwise.
func (s *Screen) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		if n, err := s.p.Write(b); err == nil {
			return n, nil
		}
	}
	return s.f.Write(b)
}

// Sync does nothing: a terminal needs no sync (and a pipe refuses one).
func (s *Screen) Sync() error { return nil }

// bars starts drawing progress bars on s, if s is a terminal, and returns
// them; nil (no bars) otherwise. The caller calls bars.wait once every bar is
// complete or aborted.
func (s *Screen) bars() *uploadBars {
	if s == nil || !isTerminal(s.f) {
		return nil
	}
	p := mpb.New(mpb.WithOutput(s.f), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	// The keeper draws nothing and keeps the container running until wait:
	// lines written after the last upload's bar is complete are drawn by the
	// render that removes it.
	keeper := p.New(0, mpb.NopStyle())
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	return &uploadBars{screen: s, p: p, keeper: keeper}
}

// uploadBars draws one bar per upload under way, each with its counts, its
// rate and the time left.
type uploadBars struct {
	screen *Screen
	p      *mpb.Progress
	keeper *mpb.Bar
}

// wait waits for every bar to be complete or aborted, draws them a last
// time and gives the screen back to plain writes.
func (u *uploadBars) wait() {
	if u == nil {
		return
	}
	u.keeper.Abort(true)
	u.p.Wait()
	u.screen.mu.Lock()
	u.screen.p = nil
	u.screen.mu.Unlock()
}

// upload is one upload's feedback: a bar on a terminal, nothing elsewhere.
// Its methods may be called on nil.
type upload struct {
	bar  *mpb.Bar
	last time.Time
}

// start adds sid's bar for size bytes, resumed at offset (a nil u draws
// nothing).
func (u *uploadBars) start(sid string, offset, size int64) *upload {
	if u == nil {
		return nil
	}
	bar := u.p.AddBar(size,
		mpb.PrependDecorators(
			decor.Name(sid+" ", decor.WCSyncSpaceR),
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
		),
		mpb.AppendDecorators(
			decor.OnAbort(decor.OnComplete(decor.Percentage(decor.WC{W: 5}), "done"), "interrupted"),
			decor.OnAbort(decor.OnComplete(decor.EwmaSpeed(decor.SizeB1024(0), " % .1f", 30), ""), ""),
			decor.OnAbort(decor.OnComplete(decor.Name(" ETA "), ""), ""),
			decor.OnAbort(decor.OnComplete(decor.EwmaETA(decor.ET_STYLE_GO, 30), ""), ""),
		),
	)
	bar.SetCurrent(offset)
	return &upload{bar: bar, last: time.Now()}
}

// sent moves the bar to n bytes sent.
func (up *upload) sent(n int64) {
	if up == nil {
		return
	}
	now := time.Now()
	up.bar.EwmaSetCurrent(n, now.Sub(up.last))
	up.last = now
}

// stop leaves the bar as it is, marked interrupted, unless it is complete.
func (up *upload) stop() {
	if up == nil {
		return
	}
	up.bar.Abort(false)
}

// UploadInterruptedError is a submission's error when the student
// interrupted it (Ctrl-C) during the upload.
type UploadInterruptedError struct {
	SID  string
	Name string // the file's own name
	Sent int64  // bytes of the file sent, the resumed prefix included
	Size int64
}

func (e *UploadInterruptedError) Error() string {
	return fmt.Sprintf("interrupted after sending %s of %s of %s; the board keeps what of it it had made durable, and a rerun resumes from there",
		mib(uint64(e.Sent)), mib(uint64(e.Size)), e.Name)
}

// InterruptedError is RunStudent's error when the student interrupted it
// (Ctrl-C, SIGTERM): it says what each ID had reached and the command that
// takes up where it stopped.
type InterruptedError struct {
	Lines   []string // one per ID: "SID: what it reached"
	Command string   // the command line to run again, quoted for a shell
}

func (e *InterruptedError) Error() string {
	var b strings.Builder
	b.WriteString("interrupted:\n")
	for _, l := range e.Lines {
		b.WriteString("  " + l + "\n")
	}
	if e.Command != "" {
		b.WriteString("to go on where it stopped, run the same command again:\n  " + e.Command)
	} else {
		b.WriteString("to go on where it stopped, run the same command again")
	}
	return b.String()
}

// interruptedLine says what sid had reached when the run was interrupted:
// err is its run's error (nil: it was submitted).
func interruptedLine(sid string, err error) string {
	var up *UploadInterruptedError
	switch {
	case err == nil:
		return sid + ": submitted before the interrupt (its receipt is saved)"
	case errors.As(err, &up):
		return sid + ": " + up.Error()
	default:
		return sid + ": not submitted yet; the command below submits it"
	}
}

// shellSafe matches an argument a POSIX shell reads as it is.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// ShellQuote returns args as one command line a POSIX shell reads back as
// args: each argument that needs it in single quotes.
func ShellQuote(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if shellSafe.MatchString(a) {
			quoted[i] = a
			continue
		}
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

// writerTo returns where the course's lines go: out itself, unless out is
// the terminal the bars are drawn on, in which case they go through the
// screen, above the bars.
func (s *Screen) writerTo(out io.Writer) io.Writer {
	f, ok := out.(*os.File)
	if s == nil || !ok || !isTerminal(f) || !isTerminal(s.f) {
		return out
	}
	return s
}
