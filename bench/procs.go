package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// install is a pkiboard installation in a temporary directory.
type install struct {
	dir    string
	config string
}

// newInstall writes a config with the daemons on ephemeral loopback ports;
// extra adds keys to sections.
func newInstall(extra map[string]string) *install {
	dir, err := os.MkdirTemp("", "pkibench")
	if err != nil {
		fatalf("%v", err)
	}
	sections := map[string]string{
		"log":     "level = \"info\"\nformat = \"json\"\n",
		"ca":      "listen = \"127.0.0.1:0\"\n",
		"board":   "listen = \"127.0.0.1:0\"\n",
		"student": "",
	}
	for k, v := range extra {
		sections[k] += v + "\n"
	}
	var b strings.Builder
	for _, s := range []string{"log", "ca", "board", "student"} {
		fmt.Fprintf(&b, "[%s]\n%s\n", s, sections[s])
	}
	cfg := filepath.Join(dir, "pkiboard.toml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		fatalf("%v", err)
	}
	return &install{dir: dir, config: cfg}
}

func (in *install) path(elem ...string) string {
	return filepath.Join(append([]string{in.dir}, elem...)...)
}

func (in *install) remove() { os.RemoveAll(in.dir) }

// profiles counts the CPU profiles requested with -profile.
var profiles int

// daemon is a running pkiboard process.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

// start runs a daemon and waits for the address it logs as listening on.
func (in *install) start(bin, role string, args ...string) *daemon {
	cmd := exec.Command(bin, append([]string{"--config", in.config, "--role=" + role}, args...)...)
	if *profileFlag != "" {
		profiles++
		cmd.Env = append(os.Environ(), fmt.Sprintf("PKIBOARD_CPUPROFILE=%s/%s-%d.prof", *profileFlag, role, profiles))
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		fatalf("%v", err)
	}
	if err := cmd.Start(); err != nil {
		fatalf("start %s: %v", role, err)
	}
	d := &daemon{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	var lines []string
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if len(lines) < 50 {
				lines = append(lines, sc.Text())
			}
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				if msg, _ := rec["msg"].(string); strings.HasSuffix(msg, " listening") {
					if a, ok := rec["addr"].(string); ok {
						select {
						case addr <- a:
						default:
						}
					}
				}
			}
		}
	}()
	go func() { cmd.Wait(); close(d.done) }()
	select {
	case d.addr = <-addr:
		return d
	case <-d.done:
		fatalf("%s exited at start:\n%s", role, strings.Join(lines, "\n"))
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		fatalf("%s did not start in 30s", role)
	}
	return nil
}

// stop ends the daemon with SIGTERM (SIGKILL after 20 s).
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// peakRSS returns the process's peak resident set size (VmHWM), in bytes.
func (d *daemon) peakRSS() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}
