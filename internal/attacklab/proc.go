package attacklab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of the lab's waits.
const (
	startTimeout  = 30 * time.Second // a daemon to say it listens
	stopTimeout   = 20 * time.Second // a daemon to exit after SIGTERM
	commandLimit  = time.Minute      // a student or an operator command to finish
	finishTimeout = 20 * time.Second // the adversary to log a connection's end
	settleTimeout = 5 * time.Second  // the board to log what it made of a session
)

// record is one JSON log line of a daemon.
type record map[string]any

func (r record) msg() string { s, _ := r["msg"].(string); return s }

func (r record) str(key string) string { s, _ := r[key].(string); return s }

func (r record) num(key string) int { f, _ := r[key].(float64); return int(f) }

func (r record) flag(key string) bool { b, _ := r[key].(bool); return b }

// proc is a running pkiboard daemon (the CA, the board or the adversary) whose
// JSON log the lab reads.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string // where it listens, from its log

	mu      sync.Mutex
	records []record
	raw     bytes.Buffer
	changed chan struct{} // closed and replaced at each new record

	exited  chan struct{}
	waitErr error
}

// startProc runs bin with args and waits until it logs "… listening" with its
// address.
func startProc(name, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	p := &proc{name: name, cmd: cmd, changed: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s: %w", name, err)
	}
	listening := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var r record
			ok := json.Unmarshal(sc.Bytes(), &r) == nil
			p.mu.Lock()
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			if ok {
				p.records = append(p.records, r)
				close(p.changed)
				p.changed = make(chan struct{})
			}
			p.mu.Unlock()
			if ok && strings.HasSuffix(r.msg(), " listening") && r.str("addr") != "" {
				select {
				case listening <- r.str("addr"):
				default:
				}
			}
		}
	}()
	go func() {
		<-scanned // Wait must not close the pipe before the log is read
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.addr = <-listening:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("the %s exited before listening (%v):\n%s", name, p.waitErr, p.log())
	case <-time.After(startTimeout):
		p.kill()
		return nil, fmt.Errorf("the %s did not listen within %s:\n%s", name, startTimeout, p.log())
	}
}

// log returns everything the process wrote to stderr so far.
func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// mark returns the number of log records so far, to look at later ones only.
func (p *proc) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.records)
}

// since returns the log records after mark.
func (p *proc) since(mark int) []record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]record(nil), p.records[mark:]...)
}

// waitFor waits until a record after mark satisfies ok, or d passes; it
// returns the record, or nil.
func (p *proc) waitFor(ctx context.Context, mark int, d time.Duration, ok func(record) bool) record {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for _, r := range p.records[mark:] {
			if ok(r) {
				p.mu.Unlock()
				return r
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.exited:
			return nil
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// stop sends SIGTERM, waits for the exit (then kills), and returns the exit
// code (-1 if it had to be killed).
func (p *proc) stop() int {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it exits either way
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(stopTimeout):
		p.kill()
		return -1
	}
}

// kill ends the process at once and waits for it.
func (p *proc) kill() {
	p.cmd.Process.Kill() //nolint:errcheck // may be gone already
	<-p.exited
}

// childEnv is the environment of the lab's processes. A binary built with
// -race sleeps a second at exit (GORACE atexit_sleep_ms) to let late race
// reports out; the lab starts a dozen processes per row and reads their logs
// to the end, so it turns the sleep off unless GORACE says otherwise. Races
// are still reported (and fail the row: see raceReported).
func childEnv() []string {
	env := os.Environ()
	if os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// raceReported reports whether a log holds a race detector's report.
func raceReported(log string) bool { return strings.Contains(log, "WARNING: DATA RACE") }

// output is a finished command.
type output struct {
	code           int
	stdout, stderr string
}

// runCmd runs bin with args to completion, for at most commandLimit.
func runCmd(ctx context.Context, bin string, args ...string) (output, error) {
	ctx, cancel := context.WithTimeout(ctx, commandLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := output{stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		return out, fmt.Errorf("pkiboard %s did not finish within %s", strings.Join(args, " "), commandLimit)
	}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			return out, err
		}
		out.code = ee.ExitCode()
	}
	return out, nil
}
