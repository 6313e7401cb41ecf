package attacklab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"pkiboard/internal/proc"
)

// Bounds of the lab's waits.
const (
	stopTimeout   = 20 * time.Second // a daemon to exit after SIGTERM
	commandLimit  = time.Minute      // a student or an operator command to finish
	finishTimeout = 20 * time.Second // the adversary to log a connection's end
	settleTimeout = 5 * time.Second  // the board to log what it made of a session
)

// record is one JSON log line of a daemon.
type record = proc.Record

// startProc runs bin with args and waits until it logs "… listening" with its
// address.
func startProc(name, bin string, args ...string) (*proc.Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	return proc.Start(name, cmd)
}

// stop stops p (SIGTERM, then SIGKILL after stopTimeout) and returns its exit
// code, -1 if it had to be killed.
func stop(p *proc.Proc) int {
	code, _ := p.Stop(stopTimeout)
	return code
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
	return runCmdIn(ctx, "", nil, bin, args...)
}

// runCmdIn is runCmd in the directory dir (the lab's own if ""), with env
// added to the environment.
func runCmdIn(ctx context.Context, dir string, env []string, bin string, args ...string) (output, error) {
	ctx, cancel := context.WithTimeout(ctx, commandLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(childEnv(), env...)
	cmd.Dir = dir
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
