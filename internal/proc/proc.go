// Package proc runs pkiboard as a child process for the end-to-end tests, the
// attack lab and the benchmarks: it writes a config with every daemon on an
// ephemeral loopback port, starts a daemon and learns its address from its
// JSON log, keeps that log for inspection, and stops the process.
package proc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartTimeout bounds how long Start waits for a daemon to say it listens.
const StartTimeout = 30 * time.Second

// Config returns a config file's text with the CA and the board on ephemeral
// loopback ports and JSON logs at level; extra adds lines to the sections it
// names (log, ca, board, student).
func Config(level string, extra map[string]string) string {
	sections := map[string]string{
		"log":     fmt.Sprintf("level = %q\nformat = \"json\"\n", level),
		"ca":      "listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
		"board":   "listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
		"student": "",
	}
	for k, v := range extra {
		sections[k] += v + "\n"
	}
	var b strings.Builder
	for _, s := range []string{"log", "ca", "board", "student"} {
		fmt.Fprintf(&b, "[%s]\n%s\n", s, sections[s])
	}
	return b.String()
}

// Record is one JSON log line.
type Record map[string]any

// Msg returns the record's message.
func (r Record) Msg() string { return r.Str("msg") }

// Str returns a string field, or "".
func (r Record) Str(key string) string { s, _ := r[key].(string); return s }

// Num returns a numeric field, or 0.
func (r Record) Num(key string) int { f, _ := r[key].(float64); return int(f) }

// Flag returns a boolean field, or false.
func (r Record) Flag(key string) bool { b, _ := r[key].(bool); return b }

// Proc is a running pkiboard process whose standard error (its log) is read
// line by line; lines that are JSON are also kept as Records.
type Proc struct {
	Name string    // what the messages call it
	Cmd  *exec.Cmd // the process
	Addr string    // where it listens, once Start has returned

	mu      sync.Mutex
	records []Record
	raw     bytes.Buffer
	changed chan struct{} // closed and replaced at each new record

	exited  chan struct{}
	waitErr error
}

// Options tune Launch and Start.
type Options struct {
	// KeepLines, if positive, keeps only the first KeepLines lines of the log
	// (the start-up), for a process that logs a line per request under load.
	KeepLines int
}

// Launch starts cmd (whose Stderr must not be set) without waiting for
// anything; its standard output is discarded unless cmd.Stdout is set.
func Launch(name string, cmd *exec.Cmd) (*Proc, error) {
	return LaunchWith(name, cmd, Options{})
}

// LaunchWith is Launch with options.
func LaunchWith(name string, cmd *exec.Cmd, o Options) (*Proc, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if cmd.Stdout == nil {
		cmd.Stdout = io.Discard
	}
	p := &Proc{Name: name, Cmd: cmd, changed: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s: %w", name, err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for lines := 0; sc.Scan(); lines++ {
			if o.KeepLines > 0 && lines >= o.KeepLines {
				continue // read on, so that the process never blocks on its log
			}
			var r Record
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
		}
	}()
	go func() {
		<-scanned // Wait closes the pipe: read the log to its end first
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Start launches a daemon and waits, up to StartTimeout, until it logs
// "… listening" with its address, which it sets as Addr.
func Start(name string, cmd *exec.Cmd) (*Proc, error) {
	return StartWith(name, cmd, Options{})
}

// StartWith is Start with options.
func StartWith(name string, cmd *exec.Cmd, o Options) (*Proc, error) {
	p, err := LaunchWith(name, cmd, o)
	if err != nil {
		return nil, err
	}
	r := p.WaitFor(context.Background(), 0, StartTimeout, func(r Record) bool {
		return strings.HasSuffix(r.Msg(), " listening") && r.Str("addr") != ""
	})
	if r != nil {
		p.Addr = r.Str("addr")
		return p, nil
	}
	select {
	case <-p.exited:
		return nil, fmt.Errorf("the %s exited before listening (%v):\n%s", name, p.waitErr, p.Log())
	default:
		p.Kill()
		return nil, fmt.Errorf("the %s did not listen within %s:\n%s", name, StartTimeout, p.Log())
	}
}

// Exited is closed once the process has exited and its log is read.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is what waiting for the process returned; valid once Exited is closed.
func (p *Proc) Err() error { return p.waitErr }

// ExitCode is the process's exit code; valid once Exited is closed.
func (p *Proc) ExitCode() int { return p.Cmd.ProcessState.ExitCode() }

// Log returns everything the process wrote to standard error so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// Mark returns the number of log records so far, to look at later ones only.
func (p *Proc) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.records)
}

// Since returns the log records after mark.
func (p *Proc) Since(mark int) []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.records[mark:]...)
}

// Logged returns how many log records have a message containing substr.
func (p *Proc) Logged(substr string) int {
	n := 0
	for _, r := range p.Since(0) {
		if strings.Contains(r.Msg(), substr) {
			n++
		}
	}
	return n
}

// WaitFor waits until a record after mark satisfies ok, the process exits, d
// passes or ctx ends; it returns the record, or nil.
func (p *Proc) WaitFor(ctx context.Context, mark int, d time.Duration, ok func(Record) bool) Record {
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

// Stop sends SIGTERM and waits up to timeout for the exit; then it kills the
// process. It returns the exit code (-1 if a signal ended the process), and
// false if the process had to be killed.
func (p *Proc) Stop(timeout time.Duration) (code int, clean bool) {
	select {
	case <-p.exited:
		return p.ExitCode(), true
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it exits either way
	select {
	case <-p.exited:
		return p.ExitCode(), true
	case <-time.After(timeout):
		p.Kill()
		return -1, false
	}
}

// Kill ends the process at once and waits until it has exited.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill() //nolint:errcheck // may be gone already
	<-p.exited
}
