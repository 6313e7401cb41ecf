// Package attacklab runs the course scenario against its attackers. It starts
// a real CA and board from the pkiboard executable on ephemeral loopback
// ports, with the CA under policy "token" as a course runs it, and plays each
// row of the table (Rows) against them, judging from what every party reports
// — exit codes, the error codes in the student's output and in the daemons'
// logs, the board's list of submissions, the CA's list of certificates, the
// attacker's own log, file sizes and CPU times — whether the attack was
// defeated, and by the defence the row names.
//
// A row is of one of two kinds. A Scenario puts the adversary (`pkiboard
// --role=adversary`) in the middle of a student's session with the board. A
// Boundary attacks what surrounds the session: the CA exchange (an observer of
// the wire, a proxy that holds a request back), the board's identity (a stolen
// board token or key, a stale status), strangers who flood the daemons, and
// the evidence a verifier is shown; its attacker is the lab itself, acting as
// the attacker's own client or proxy and speaking PROTOCOL.md through package
// wire, or the adversary again.
//
// The judgement can fail: a row whose attack achieves its goal (a tampered
// submission stored, plaintext seen, a key recovered, a student talking to an
// impostor, a certificate issued to the attacker, a stranger costing the
// daemon its work or its disk) is "SUCCEEDED"; a row stopped by another
// defence than the one it names, or whose attacker did nothing, is "NOT AS
// EXPECTED". `make attacks` (cmd/attacks) prints the table;
// e2e/attacks_test.go asserts every row.
package attacklab

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
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

	root   *x509.Certificate // the course root
	rootFP string            // its fingerprint, as the config takes it
	// wire is the observer on the network between the board (and the
	// students of the boundary rows) and the CA: it relays every byte and
	// records it. The board reaches the CA only through it, so that its
	// enrollment crosses an observed wire.
	wire *tap
	// boardToken is the one-time board token the CA's first start wrote,
	// read before the board spent it; boardSerials are the serials of every
	// certificate the real board has held.
	boardToken   string
	boardSerials []string

	tokensMu sync.Mutex
	tokens   map[string]string // the last token made for each SID
}

// mallory is the adversary's SID: a student of the course like any other.
const mallory = "mallory"

// The lab's settings that differ from the defaults: the CA under policy
// "token", as a course runs it (under "open" anyone may enroll any SID, and
// stealing a token would gain nothing); a board status valid for
// statusValidity, so that the stale-status row can wait for one to expire;
// and a board that allows RC4, so that the downgrade row tests the transcript
// signature rather than the board's refusal of RC4.
const statusValidity = 12 * time.Second

// Paths of the lab's installation, relative to its directory (the config's
// defaults, which resolve against the config file's directory).
var (
	caDataDir    = filepath.Join("data", "ca")
	boardDataDir = filepath.Join("data", "board")
)

// Start starts the CA, the observed wire in front of it, and the board, and
// enrolls mallory for the adversary.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	l := &Lab{opts: opts, dir: opts.Dir}
	// Absolute, since some rows run commands in directories of their own.
	bin, err := exec.LookPath(opts.Bin)
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err != nil {
		return nil, fmt.Errorf("the pkiboard executable: %w", err)
	}
	l.opts.Bin = bin
	if l.dir == "" {
		// Short, because the daemons' operator sockets live in it.
		dir, err := os.MkdirTemp("", "pkb-atk")
		if err != nil {
			return nil, err
		}
		l.dir = dir
	}
	l.config = filepath.Join(l.dir, "pkiboard.toml")
	cfg := proc.Config("info", map[string]string{
		"ca":    fmt.Sprintf("policy = \"token\"\nstatus_validity = %q", statusValidity),
		"board": "allow_rc4 = true",
	})
	if err := os.WriteFile(l.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if err := l.start(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) start(ctx context.Context) error {
	var err error
	l.printf("starting the CA and the board (%s)", l.dir)
	if l.ca, err = startProc("CA", l.opts.Bin, "--config", l.config, "--role=ca"); err != nil {
		return err
	}
	if l.root, err = keys.ReadCertificate(l.path(caDataDir, ca.RootCertFile)); err != nil {
		return fmt.Errorf("the CA's root: %w", err)
	}
	l.rootFP = keys.FingerprintHex(l.root)
	token, err := os.ReadFile(l.path(caDataDir, ca.BoardTokenFile))
	if err != nil {
		return fmt.Errorf("the CA's first board token: %w", err)
	}
	l.boardToken = strings.TrimSpace(string(token))
	if l.wire, err = newTap(l.ca.Addr, nil); err != nil {
		return err
	}
	if err := l.startBoard(); err != nil {
		return err
	}
	l.mallory = filepath.Join(l.dir, mallory)
	if _, err := l.enroll(ctx, mallory, l.mallory, l.ca.Addr); err != nil {
		return fmt.Errorf("enrolling the adversary as %s: %w", mallory, err)
	}
	subs, err := l.submissions(ctx)
	if err != nil {
		return err
	}
	l.known = map[string]bool{}
	for _, s := range subs {
		l.known[s.ID] = true
	}
	l.printf("CA on %s, board on %s (reaching the CA through the observed wire %s); the adversary enrolled as %q",
		l.ca.Addr, l.board.Addr, l.wire.Addr(), mallory)
	return nil
}

// startBoard starts the board, which reaches the CA through the observed
// wire, and notes its certificate's serial.
func (l *Lab) startBoard() error {
	var err error
	if l.board, err = startProc("board", l.opts.Bin, "--config", l.config, "--role=board", "--ca-addr", l.wire.Addr()); err != nil {
		return err
	}
	cert, err := keys.ReadCertificate(l.path(boardDataDir, ca.CertFile))
	if err != nil {
		return fmt.Errorf("the board's certificate: %w", err)
	}
	l.boardSerials = append(l.boardSerials, keys.SerialHex(cert.SerialNumber))
	return nil
}

// path returns a path inside the lab's directory.
func (l *Lab) path(elem ...string) string {
	return filepath.Join(append([]string{l.dir}, elem...)...)
}

// token makes a one-time enrollment token for sid with `pkiboard token`.
func (l *Lab) token(ctx context.Context, args ...string) (string, error) {
	out, err := runCmd(ctx, l.opts.Bin, append([]string{"--config", l.config, "token"}, args...)...)
	if err == nil && out.code != 0 {
		err = fmt.Errorf("pkiboard token %s: exit %d: %s", strings.Join(args, " "), out.code, out.stderr)
	}
	if err != nil {
		return "", err
	}
	token, _, _ := strings.Cut(out.stdout, "\n")
	return strings.TrimSpace(token), nil
}

// tokenEnv returns the environment that gives a student role or `pkiboard
// enroll` a fresh token for sid.
func (l *Lab) tokenEnv(ctx context.Context, sid string) ([]string, error) {
	token, err := l.token(ctx, "--sid", sid)
	if err != nil {
		return nil, err
	}
	l.tokensMu.Lock()
	defer l.tokensMu.Unlock()
	if l.tokens == nil {
		l.tokens = map[string]string{}
	}
	l.tokens[sid] = token
	return []string{"PKIBOARD_TOKEN=" + token}, nil
}

// lastToken returns the last token the lab made for sid.
func (l *Lab) lastToken(sid string) (string, error) {
	l.tokensMu.Lock()
	defer l.tokensMu.Unlock()
	token, ok := l.tokens[sid]
	if !ok {
		return "", fmt.Errorf("no token was made for %s", sid)
	}
	return token, nil
}

// enroll enrolls sid into dir with `pkiboard enroll` and a fresh token,
// through the CA at caAddr.
func (l *Lab) enroll(ctx context.Context, sid, dir, caAddr string) (output, error) {
	env, err := l.tokenEnv(ctx, sid)
	if err != nil {
		return output{}, err
	}
	out, err := runCmdIn(ctx, "", env, l.opts.Bin, "--config", l.config, "enroll", "--sid", sid, "--out", dir, "--ca-addr", caAddr)
	if err == nil && out.code != 0 {
		err = fmt.Errorf("exit %d: %s", out.code, out.stderr)
	}
	return out, err
}

// Close stops the board, the observed wire and the CA, and removes the
// working directory unless asked to keep it. It returns an error if a daemon
// did not stop cleanly.
func (l *Lab) Close() error {
	var errs []error
	stopOne := func(p *proc.Proc) {
		if p != nil {
			if code := stop(p); code != 0 {
				errs = append(errs, fmt.Errorf("the %s exited with %d", p.Name, code))
			}
		}
	}
	stopOne(l.board)
	if l.wire != nil {
		l.wire.Close()
	}
	stopOne(l.ca)
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
	ID       string        // the row's short name
	Name     string        // the row's name in the table
	Element  string        // what stops the attack
	SID      string        // the legitimate student of the row, if it has one
	Did      string        // what the attacker did
	Detected string        // who detected it and how
	Outcome  string        // what came of it, with the figures that show it
	Verdict  Verdict       //
	Problems []string      // why the verdict is not Defeated
	Elapsed  time.Duration // the whole row
	Evidence string        // what the row observed, for a row not defeated
}

// conclude gives r its verdict: Succeeded if the attack reached its goal
// (succeeded says how), else Unexpected if anything else went otherwise than
// the row expects (problems), else Defeated with outcome.
func (r *Result) conclude(succeeded, problems []string, outcome string) {
	switch {
	case len(succeeded) > 0:
		r.Verdict, r.Outcome = Succeeded, "ATTACK SUCCEEDED: "+strings.Join(succeeded, "; ")
		r.Problems = append(append([]string(nil), succeeded...), problems...)
	case len(problems) > 0:
		r.Verdict, r.Outcome = Unexpected, strings.Join(problems, "; ")
		r.Problems = problems
	default:
		r.Verdict, r.Outcome = Defeated, outcome
	}
}

// Row is one row of the table: a Scenario (the adversary in the middle of a
// session) or a Boundary attack.
type Row struct {
	ID   string // short name
	Name string // the name in the table
	run  func(ctx context.Context, l *Lab) *Result
}

// Rows returns every row of the table, in order: the scenarios, then the
// boundary attacks.
func Rows() []Row {
	var rows []Row
	for _, sc := range Scenarios() {
		rows = append(rows, Row{ID: sc.ID, Name: sc.Name, run: func(ctx context.Context, l *Lab) *Result { return l.Run(ctx, sc) }})
	}
	for _, b := range Boundaries() {
		rows = append(rows, Row{ID: b.ID, Name: b.Name, run: func(ctx context.Context, l *Lab) *Result { return l.RunBoundary(ctx, b) }})
	}
	return rows
}

// Play plays one row of the table and judges it.
func (l *Lab) Play(ctx context.Context, row Row) *Result { return row.run(ctx, l) }

// Run plays one scenario: it starts the adversary in front of the board,
// runs the student through it, stops the adversary and judges.
func (l *Lab) Run(ctx context.Context, sc Scenario) *Result {
	start := time.Now()
	r := &Result{ID: sc.ID, Name: sc.Name, Element: sc.Element, SID: "alice-" + sc.ID}
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
	judge(r, sc, ev)
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
	env, err := l.tokenEnv(ctx, sid)
	if err != nil {
		return nil, err
	}
	ev := &evidence{}
	studentArgs = append(studentArgs, "--ca-addr", l.ca.Addr, "--board-addr", adv.Addr)
	if ev.student, err = runCmdIn(ctx, "", env, l.opts.Bin, studentArgs...); err != nil {
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
	suites := []string{"aes-256-ctr-hmac-sha256"}
	if sc.BothSuites {
		suites = append(suites, "rc4-hmac-sha256")
	}
	path, err := l.studentConfig(rowDir, "student", suites...)
	if err != nil {
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

// studentConfig writes a student's config into dir, keeping its data in
// dir/dataDir: the course root pinned by its fingerprint, and the suites
// offered (AES alone if none is given). It returns the config's path.
func (l *Lab) studentConfig(dir, dataDir string, suites ...string) (string, error) {
	if len(suites) == 0 {
		suites = []string{"aes-256-ctr-hmac-sha256"}
	}
	quoted := make([]string, len(suites))
	for i, s := range suites {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	cfg := fmt.Sprintf(`[log]
level = "info"
format = "json"

[student]
data_dir = %q
timeout = "15s"
root_fingerprint = %q
suites = [%s]
`, dataDir, l.rootFP, strings.Join(quoted, ", "))
	path := filepath.Join(dir, dataDir+".toml")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// reportSize is the size of the rows' report: four Data records of at most
// 64 KiB.
const reportSize = 200 << 10

var (
	receiptLine     = regexp.MustCompile(`(?m)^\S+ submitted: receipt \S+, SHA-256`)
	boardRefusedRe  = regexp.MustCompile(`: refused \(([a-z0-9-]+)\)`)
	studentRefuseRe = regexp.MustCompile(`we refused the board \(([a-z0-9-]+)\)`)
)

// judge decides a scenario's row from its evidence.
func judge(r *Result, sc Scenario, ev *evidence) {
	exp := sc.Expect
	var succeeded, problems []string

	// What the adversary did.
	var did []string
	for _, rec := range ev.adversary {
		if rec.Flag("action") {
			did = append(did, strings.TrimPrefix(rec.Msg(), "ATTACK "+sc.Attack+": "))
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

	r.conclude(succeeded, problems, outcome(sc, fin))
}

// outcome says what a defeated attack came to, with the adversary's numbers.
func outcome(sc Scenario, fin record) string {
	switch sc.Attack {
	case "eavesdrop":
		return fmt.Sprintf("%s: the message text found 0 times in %d bytes; the SID, certificates and the size (%d bytes) are visible",
			sc.Expect.Outcome, fin.Num("bytes_searched"), fin.Num("submission_bytes"))
	case "steal-session-key":
		return fmt.Sprintf("%s (%d candidates tried)", sc.Expect.Outcome, fin.Num("key_candidates"))
	case "replay":
		if c := fin.Num("replay_refusal"); c != 0 {
			return fmt.Sprintf("%s; the board refused the replayed hello in the clear: %s (%d)", sc.Expect.Outcome, wire.Code(c), c)
		}
		return fmt.Sprintf("%s; the board answered the replay with %s", sc.Expect.Outcome, fin.Str("replay_answers"))
	}
	return sc.Expect.Outcome
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
