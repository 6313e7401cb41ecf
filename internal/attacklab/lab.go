// Package attacklab runs the course scenario with the adversary in the middle.
// It starts a real CA and board from the pkiboard executable on ephemeral
// loopback ports and, for each attack of the table (Scenarios), starts the
// adversary in front of the board, runs a legitimate student through it, and
// judges from what every party reports — exit codes, the error codes in the
// student's output and in the board's log, the board's list of submissions,
// and the adversary's own log — whether the attack was defeated, and by the
// defence the row names.
//
// The judgement can fail: a row whose attack achieves its goal (a tampered
// submission stored, plaintext seen, a key recovered, a student talking to an
// impostor) is "SUCCEEDED"; a row stopped by another defence than the one it
// names, or whose adversary did nothing, is "NOT AS EXPECTED". `make attacks`
// (cmd/attacks) prints the table; e2e/attacks_test.go asserts every row.
package attacklab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"pkiboard/internal/proc"
	"pkiboard/wire"
)

// Options configures a Lab.
type Options struct {
	Bin  string    // the pkiboard executable
	Dir  string    // working directory; a new temporary one if ""
	Keep bool      // keep the working directory afterwards
	Log  io.Writer // progress lines; none if nil
}

// Lab is a running CA and board, and the adversary's own enrollment.
type Lab struct {
	opts      Options
	dir       string
	config    string
	ca, board *proc.Proc
	mallory   string          // directory holding mallory's cert.pem and key.pem
	known     map[string]bool // the ids of the submissions the board held after the last row
}

// mallory is the adversary's SID: a student of the course like any other.
const mallory = "mallory"

// Start starts the CA and the board (which allows RC4, so that the downgrade
// row tests the transcript signature rather than the board's refusal of
// RC4), and enrolls mallory for the adversary.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	l := &Lab{opts: opts, dir: opts.Dir}
	if l.dir == "" {
		// Short, because the daemons' operator sockets live in it.
		dir, err := os.MkdirTemp("", "pkb-atk")
		if err != nil {
			return nil, err
		}
		l.dir = dir
	}
	l.config = filepath.Join(l.dir, "pkiboard.toml")
	cfg := proc.Config("info", map[string]string{"board": "allow_rc4 = true"})
	if err := os.WriteFile(l.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	var err error
	l.printf("starting the CA and the board (%s)", l.dir)
	if l.ca, err = startProc("CA", opts.Bin, "--config", l.config, "--role=ca"); err != nil {
		l.Close()
		return nil, err
	}
	if l.board, err = startProc("board", opts.Bin, "--config", l.config, "--role=board", "--ca-addr", l.ca.Addr); err != nil {
		l.Close()
		return nil, err
	}
	l.mallory = filepath.Join(l.dir, mallory)
	out, err := runCmd(ctx, opts.Bin, "--config", l.config, "enroll", "--sid", mallory, "--out", l.mallory, "--ca-addr", l.ca.Addr)
	if err == nil && out.code != 0 {
		err = fmt.Errorf("exit %d: %s", out.code, out.stderr)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("enrolling the adversary as %s: %w", mallory, err)
	}
	subs, err := l.submissions(ctx)
	if err != nil {
		l.Close()
		return nil, err
	}
	l.known = map[string]bool{}
	for _, s := range subs {
		l.known[s.ID] = true
	}
	l.printf("CA on %s, board on %s; the adversary enrolled as %q", l.ca.Addr, l.board.Addr, mallory)
	return l, nil
}

// Close stops the board and the CA, and removes the working directory unless
// asked to keep it. It returns an error if a daemon did not stop cleanly.
func (l *Lab) Close() error {
	var errs []error
	for _, p := range []*proc.Proc{l.board, l.ca} {
		if p != nil {
			if code := stop(p); code != 0 {
				errs = append(errs, fmt.Errorf("the %s exited with %d", p.Name, code))
			}
		}
	}
	if !l.opts.Keep && l.opts.Dir == "" && l.dir != "" {
		os.RemoveAll(l.dir)
	}
	return errors.Join(errs...)
}

func (l *Lab) printf(format string, args ...any) {
	if l.opts.Log != nil {
		fmt.Fprintf(l.opts.Log, "attacks: "+format+"\n", args...)
	}
}

// Verdict is the judgement of a row.
type Verdict string

const (
	Defeated   Verdict = "defeated"
	Succeeded  Verdict = "SUCCEEDED"       // the attack achieved its goal
	Unexpected Verdict = "NOT AS EXPECTED" // stopped, but not by the defence named, or not carried out
)

// Result is one row of the table, judged.
type Result struct {
	Scenario
	SID      string        // the legitimate student of the row
	Did      string        // what the adversary did, from its log
	Detected string        // who detected it and how
	Outcome  string        // what came of it
	Verdict  Verdict       //
	Problems []string      // why the verdict is not Defeated
	Elapsed  time.Duration // the whole row
	Evidence string        // the logs of the row, for a row not defeated
}

// Run plays one row: it starts the adversary in front of the board, runs the
// student through it, stops the adversary and judges.
func (l *Lab) Run(ctx context.Context, sc Scenario) *Result {
	start := time.Now()
	r := &Result{Scenario: sc, SID: "alice-" + sc.ID}
	l.printf("%s: the adversary %s; the student %s", sc.Name, sc.Attack, r.SID)
	ev, err := l.play(ctx, sc, r.SID)
	r.Elapsed = time.Since(start)
	if err != nil {
		r.Verdict = Unexpected
		r.Problems = []string{err.Error()}
		if ev != nil {
			r.Evidence = ev.String()
		}
		return r
	}
	judge(r, ev)
	if r.Verdict != Defeated {
		r.Evidence = ev.String()
	}
	l.printf("%s: %s (%s)", sc.Name, r.Verdict, r.Elapsed.Round(time.Millisecond))
	return r
}

// evidence is what every party of a row reported.
type evidence struct {
	student      output
	board        []record // the board's log during the row
	adversary    []record // the adversary's whole log
	finished     record   // the adversary's "finished" line, or nil
	advExit      int
	stored       []submission // new submissions of the row's SIDs
	advLog, bLog string
}

func (e *evidence) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "student exit %d\nstdout:\n%s\nstderr:\n%s\n", e.student.code, e.student.stdout, e.student.stderr)
	fmt.Fprintf(&b, "adversary log (exit %d):\n%s\n", e.advExit, e.advLog)
	fmt.Fprintf(&b, "board log during the row:\n%s\n", e.bLog)
	return b.String()
}

// submission is one entry of `pkiboard submissions --json`.
type submission struct {
	ID    string `json:"id"`
	SID   string `json:"sid"`
	Suite string `json:"suite"`
	Size  int64  `json:"size"`
}

// submissions lists what the board holds, through its operator socket.
func (l *Lab) submissions(ctx context.Context) ([]submission, error) {
	out, err := runCmd(ctx, l.opts.Bin, "--config", l.config, "submissions", "--json")
	if err != nil {
		return nil, err
	}
	if out.code != 0 {
		return nil, fmt.Errorf("pkiboard submissions: exit %d: %s", out.code, out.stderr)
	}
	var subs []submission
	if err := json.Unmarshal([]byte(out.stdout), &subs); err != nil {
		return nil, fmt.Errorf("pkiboard submissions --json: %w", err)
	}
	return subs, nil
}

// play runs the row and gathers the evidence.
func (l *Lab) play(ctx context.Context, sc Scenario, sid string) (*evidence, error) {
	rowDir := filepath.Join(l.dir, "rows", sc.ID)
	if err := os.MkdirAll(rowDir, 0o700); err != nil {
		return nil, err
	}
	boardMark := l.board.Mark()

	args := []string{"--config", l.config, "--role=adversary", "--listen", "127.0.0.1:0", "--upstream", l.board.Addr, "--attack", sc.Attack}
	if sc.WithCert {
		args = append(args, "--cert", filepath.Join(l.mallory, "cert.pem"), "--key", filepath.Join(l.mallory, "key.pem"))
	}
	adv, err := startProc("adversary", l.opts.Bin, args...)
	if err != nil {
		return nil, err
	}
	defer adv.Kill()

	studentArgs, err := l.studentSetup(rowDir, sc, sid)
	if err != nil {
		return nil, err
	}
	ev := &evidence{}
	studentArgs = append(studentArgs, "--ca-addr", l.ca.Addr, "--board-addr", adv.Addr)
	if ev.student, err = runCmd(ctx, l.opts.Bin, studentArgs...); err != nil {
		return nil, err
	}

	// Wait (bounded) for the adversary to finish the connection, and for the
	// board to log what it made of the row's sessions.
	ev.finished = adv.WaitFor(ctx, 0, finishTimeout, func(r record) bool {
		return strings.HasSuffix(r.Msg(), ": finished")
	})
	if sc.Expect.By == Board || sc.Expect.Stored > 0 {
		l.board.WaitFor(ctx, boardMark, settleTimeout, func(r record) bool {
			if sc.Expect.By == Board {
				return r.Str("code") == sc.Expect.Code.String()
			}
			return strings.HasPrefix(r.Msg(), "STEP 6: MAC verified")
		})
	}
	stopped := make(chan int, 1)
	go func() { stopped <- stop(adv) }()
	after, subErr := l.submissions(ctx)
	ev.advExit = <-stopped
	ev.adversary, ev.advLog = adv.Since(0), adv.Log()
	ev.board = l.board.Since(boardMark)
	for _, r := range ev.board {
		line, _ := json.Marshal(r)
		ev.bLog += string(line) + "\n"
	}
	if subErr != nil {
		return ev, subErr
	}
	for _, s := range after {
		if !l.known[s.ID] {
			l.known[s.ID] = true
			if s.SID == sid || s.SID == mallory {
				ev.stored = append(ev.stored, s)
			}
		}
	}
	return ev, nil
}

// studentSetup writes the row's student config (and report) and returns the
// student's command line, without the addresses.
func (l *Lab) studentSetup(rowDir string, sc Scenario, sid string) ([]string, error) {
	suites := `["aes-256-ctr-hmac-sha256"]`
	if sc.BothSuites {
		suites = `["aes-256-ctr-hmac-sha256", "rc4-hmac-sha256"]`
	}
	cfg := fmt.Sprintf(`[log]
level = "info"
format = "json"

[student]
data_dir = "student"
timeout = "15s"
suites = %s
`, suites)
	path := filepath.Join(rowDir, "student.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	args := []string{"--config", path, "--role=student", "--ids", sid}
	if sc.Report {
		report := filepath.Join(rowDir, "report.txt")
		line := "This is submission from " + sid + ".\n"
		text := strings.Repeat(line, reportSize/len(line)+1)[:reportSize]
		if err := os.WriteFile(report, []byte(text), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--report", report)
	}
	return args, nil
}

// reportSize is the size of the rows' report: four Data records of at most
// 64 KiB.
const reportSize = 200 << 10

var (
	receiptLine     = regexp.MustCompile(`(?m)^\S+ submitted: receipt \S+, SHA-256`)
	boardRefusedRe  = regexp.MustCompile(`: refused \(([a-z0-9-]+)\)`)
	studentRefuseRe = regexp.MustCompile(`we refused the board \(([a-z0-9-]+)\)`)
)

// judge decides a row from its evidence.
func judge(r *Result, ev *evidence) {
	exp := r.Expect
	var succeeded, problems []string

	// What the adversary did.
	var did []string
	for _, rec := range ev.adversary {
		if rec.Flag("action") {
			did = append(did, strings.TrimPrefix(rec.Msg(), "ATTACK "+r.Attack+": "))
		}
	}
	r.Did = strings.Join(did, "; ")
	fin := ev.finished
	switch {
	case fin == nil:
		problems = append(problems, "the adversary did not log the end of the connection")
		fin = record{}
	case len(did) == 0:
		problems = append(problems, "the adversary did not carry out the attack")
	}
	if ev.advExit != 0 {
		problems = append(problems, fmt.Sprintf("the adversary exited with %d after SIGTERM", ev.advExit))
	}
	if raceReported(ev.advLog) || raceReported(ev.student.stderr) {
		problems = append(problems, "the race detector reported a data race")
	}

	// Did the attack achieve its goal?
	if n := len(ev.stored); n > exp.Stored {
		var what []string
		for _, s := range ev.stored {
			what = append(what, fmt.Sprintf("%s for %s (%d bytes, %s)", s.ID, s.SID, s.Size, s.Suite))
		}
		succeeded = append(succeeded, fmt.Sprintf("the board stored %d submission(s), want %d: %s", n, exp.Stored, strings.Join(what, ", ")))
	}
	if n := fin.Num("plaintext_found"); n > 0 {
		succeeded = append(succeeded, fmt.Sprintf("the adversary found the message text or the SID %d times in what it relayed", n))
	}
	if fin.Flag("keys_recovered") {
		succeeded = append(succeeded, "the adversary recovered the record keys")
	}
	if n := fin.Num("plaintext_read"); n > 0 {
		succeeded = append(succeeded, fmt.Sprintf("the adversary, playing the board, read %d bytes of the submission", n))
	}
	if strings.Contains(fin.Str("replay_answers"), "Receipt") {
		succeeded = append(succeeded, "the board sent a receipt for the replayed session")
	}

	// The student's side.
	gotReceipt := ev.student.code == 0 && receiptLine.MatchString(ev.student.stdout)
	switch {
	case gotReceipt && !exp.Receipt:
		problems = append(problems, "the student got a receipt although the adversary interfered")
	case !gotReceipt && exp.Receipt:
		problems = append(problems, fmt.Sprintf("the student got no receipt (exit %d)", ev.student.code))
	case !exp.Receipt && ev.student.code == 0:
		problems = append(problems, "the student exited 0")
	}

	// Who detected it, with which code.
	want := exp.Code.String()
	var boardOwn, boardHeard []string
	for _, rec := range ev.board {
		code := rec.Str("code")
		if code == "" {
			continue
		}
		if strings.Contains(rec.Msg(), "the student refused") {
			boardHeard = append(boardHeard, code)
		} else {
			boardOwn = append(boardOwn, code)
		}
	}
	// A refusal of the board's in step 3 also crosses the wire in the
	// clear, where the adversary reads it: its evidence counts when the
	// board does not log a refused stranger's hello line by line.
	for _, key := range []string{"board_refusal", "replay_refusal"} {
		if c := fin.Num(key); c != 0 {
			boardOwn = append(boardOwn, wire.Code(c).String())
		}
	}
	studentOwn := firstMatch(studentRefuseRe, ev.student.stderr)
	studentHeard := firstMatch(boardRefusedRe, ev.student.stderr)
	switch exp.By {
	case Nobody:
		r.Detected = "nobody needs to: the attack is passive, and the session succeeds"
		if len(boardOwn) > 0 || studentOwn != "" || studentHeard != "" {
			problems = append(problems, fmt.Sprintf("a passive attack was refused: board %v, student %q %q", boardOwn, studentOwn, studentHeard))
		}
	case Board:
		r.Detected = fmt.Sprintf("the board: `%s` (%d)", want, uint16(exp.Code))
		if !contains(boardOwn, want) {
			problems = append(problems, fmt.Sprintf("the board did not refuse with %s; its codes: %v; the student's: %q %q", want, boardOwn, studentOwn, studentHeard))
		} else if !exp.Receipt && studentHeard != want {
			problems = append(problems, fmt.Sprintf("the student was not told %s (it reports %q)", want, studentHeard))
		}
	case Student:
		r.Detected = fmt.Sprintf("the student: `%s` (%d)", want, uint16(exp.Code))
		if studentOwn != want {
			problems = append(problems, fmt.Sprintf("the student did not refuse with %s; it reports %q %q; the board's codes: %v", want, studentOwn, studentHeard, boardOwn))
		}
	}

	switch {
	case len(succeeded) > 0:
		r.Verdict, r.Outcome = Succeeded, "ATTACK SUCCEEDED: "+strings.Join(succeeded, "; ")
		r.Problems = append(succeeded, problems...)
	case len(problems) > 0:
		r.Verdict, r.Outcome = Unexpected, strings.Join(problems, "; ")
		r.Problems = problems
	default:
		r.Verdict, r.Outcome = Defeated, outcome(r, fin)
	}
}

// outcome says what a defeated attack came to, with the adversary's numbers.
func outcome(r *Result, fin record) string {
	switch r.Attack {
	case "eavesdrop":
		return fmt.Sprintf("%s: the message text found 0 times in %d bytes; the SID, certificates and the size (%d bytes) are visible",
			r.Expect.Outcome, fin.Num("bytes_searched"), fin.Num("submission_bytes"))
	case "steal-session-key":
		return fmt.Sprintf("%s (%d candidates tried)", r.Expect.Outcome, fin.Num("key_candidates"))
	case "replay":
		if c := fin.Num("replay_refusal"); c != 0 {
			return fmt.Sprintf("%s; the board refused the replayed hello in the clear: %s (%d)", r.Expect.Outcome, wire.Code(c), c)
		}
		return fmt.Sprintf("%s; the board answered the replay with %s", r.Expect.Outcome, fin.Str("replay_answers"))
	}
	return r.Expect.Outcome
}

func firstMatch(re *regexp.Regexp, s string) string {
	if m := re.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// AllDefeated reports whether there are results and every one is defeated.
func AllDefeated(results []*Result) bool {
	for _, r := range results {
		if r.Verdict != Defeated {
			return false
		}
	}
	return len(results) > 0
}
