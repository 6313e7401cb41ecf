package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// pane is a shell in a tmux session of its own (its own server socket), the
// real terminal the student's progress bars are drawn on.
type pane struct {
	t      *testing.T
	socket string
}

// newPane starts a tmux server with one window of 250 columns running bash,
// or skips the test when tmux is absent (fails when PKIBOARD_REQUIRE_TMUX=1).
func newPane(t *testing.T) *pane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("PKIBOARD_REQUIRE_TMUX") == "1" {
			t.Fatal("tmux is required (PKIBOARD_REQUIRE_TMUX=1) but not installed: make deps installs it")
		}
		t.Skip("tmux not installed (make deps installs it)")
	}
	var name [6]byte
	rand.Read(name[:])
	p := &pane{t: t, socket: filepath.Join(os.TempDir(), "pkb-tmux-"+hex.EncodeToString(name[:]))}
	p.tmux("new-session", "-d", "-s", "pkb", "-x", "250", "-y", "60", "bash --norc --noprofile")
	t.Cleanup(func() {
		exec.Command("tmux", "-S", p.socket, "kill-server").Run()
		os.Remove(p.socket)
	})
	return p
}

func (p *pane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// typeLine types line and Enter.
func (p *pane) typeLine(line string) {
	p.tmux("send-keys", "-t", "pkb", "-l", line)
	p.tmux("send-keys", "-t", "pkb", "Enter")
}

// capture returns the pane's history and screen, wrapped lines joined.
func (p *pane) capture() string { return p.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "pkb") }

// waitFor captures the pane until ok accepts it, for at most three minutes,
// and returns that capture.
func (p *pane) waitFor(what string, ok func(screen string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s := p.capture()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the pane never showed %s; it shows:\n%s", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// barLine matches a progress bar of SID $1: its counts, its bar, its percentage.
var barLine = regexp.MustCompile(`(?m)^(alice|bob) +[0-9.]+ MiB / [0-9.]+ MiB +\[[=>\-_ ]*\].*%.*$`)

// TestProgressInATerminal runs the student in a real terminal (tmux) with
// --parallel 2 and a large report for two IDs: two bars at once, each with
// its rate and ETA; Ctrl-C stops both uploads cleanly, says what each had
// sent and prints the command that goes on, exiting 130; that command,
// typed again, says "resuming at byte N of M" before each bar and submits.
func TestProgressInATerminal(t *testing.T) {
	p := newPane(t)
	s := startSystem(t, nil)
	const size = 768 << 20
	report := s.path("report.pdf")
	writeReport(t, report, size)

	cmd := fmt.Sprintf("%s --config %s --role=student --ca-addr %s --board-addr %s --log-level warn --ids alice,bob --parallel 2 --report %s",
		bin, s.config, s.ca.Addr, s.board.Addr, report)
	p.typeLine(cmd + `; echo "run 1 exit st""atus $?"`)

	// Two bars at once, then Ctrl-C.
	screen := p.waitFor("two bars at once", func(s string) bool {
		if strings.Contains(s, "run 1 exit status") {
			t.Fatalf("the student finished before two bars were seen:\n%s", s)
		}
		return len(barLine.FindAllString(s, -1)) >= 2 && barLine.MatchString(s) &&
			strings.Contains(s, "\nalice ") && strings.Contains(s, "\nbob ")
	})
	p.tmux("send-keys", "-t", "pkb", "C-c")
	t.Logf("two bars:\n%s", lastLines(screen, 4))
	for _, l := range barLine.FindAllString(screen, -1) {
		if !strings.Contains(l, "ETA") || !strings.Contains(l, "/s") {
			t.Errorf("a bar without its rate and ETA: %q", l)
		}
	}

	screen = p.waitFor("the interrupt's message", func(s string) bool { return strings.Contains(s, "run 1 exit status") })
	t.Logf("after Ctrl-C:\n%s", lastLines(screen, 10))
	for _, want := range []string{
		"run 1 exit status 130",
		"alice: interrupted after sending",
		"bob: interrupted after sending",
		"to go on where it stopped, run the same command again:",
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("after Ctrl-C the pane does not show %q", want)
		}
	}
	if strings.Contains(screen, "use of closed network connection") {
		t.Errorf("Ctrl-C shows a network error:\n%s", screen)
	}
	m := regexp.MustCompile(`run the same command again:\n +(.+)\n`).FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("no command to run again:\n%s", screen)
	}
	again := m[1]
	if again != cmd {
		t.Errorf("the command to run again:\n got %s\nwant %s", again, cmd)
	}

	// The command again: each ID resumes, said before its bar.
	p.typeLine(again + `; echo "run 2 exit st""atus $?"`)
	screen = p.waitFor("the rerun's end", func(s string) bool { return strings.Contains(s, "run 2 exit status") })
	screen = screen[strings.Index(screen, `run 2 exit st""atus`):] // the rerun's lines alone
	t.Logf("the rerun:\n%s", lastLines(screen, 12))
	if !strings.Contains(screen, "run 2 exit status 0") {
		t.Fatalf("the rerun failed:\n%s", screen)
	}
	for _, sid := range []string{"alice", "bob"} {
		notice := regexp.MustCompile(`(?m)^` + sid + ` resuming at byte \d+ of \d+`).FindStringIndex(screen)
		bar := regexp.MustCompile(`(?m)^` + sid + ` +[0-9.]+ MiB / `).FindStringIndex(screen)
		switch {
		case notice == nil:
			t.Errorf("the rerun does not say where %s resumes", sid)
		case bar == nil:
			t.Errorf("the rerun shows no bar for %s", sid)
		case notice[0] > bar[0]:
			t.Errorf("%s's resume notice comes after its bar", sid)
		}
	}
}

// lastLines returns the last n non-empty lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var kept []string
	for i := len(lines) - 1; i >= 0 && len(kept) < n; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			kept = append([]string{lines[i]}, kept...)
		}
	}
	return strings.Join(kept, "\n")
}
