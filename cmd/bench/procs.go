package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pkiboard/internal/proc"
)

// install is a pkiboard installation in a temporary directory.
type install struct {
	dir    string
	config string
}

// loadLimits are the per-source limits of every daemon the bench starts:
// all its load comes from 127.0.0.1, one address standing for many hosts,
// whose concurrent connections (64 students at once) would otherwise be
// answered busy beyond source_burst (32). The limiter stays on, with room for
// the load.
const loadLimits = "source_burst = 1024\nsource_rate = 1024"

// newInstall writes a config with the daemons on ephemeral loopback ports;
// extra adds keys to sections.
func newInstall(extra map[string]string) *install {
	sections := map[string]string{"ca": loadLimits, "board": loadLimits}
	for k, v := range extra {
		if sections[k] != "" {
			v = sections[k] + "\n" + v
		}
		sections[k] = v
	}
	return newInstallWith(sections)
}

// newInstallWith is newInstall with sections as they are, without
// loadLimits: for a group that sets the limits itself.
func newInstallWith(sections map[string]string) *install {
	dir, err := os.MkdirTemp("", "pkibench")
	if err != nil {
		fatalf("%v", err)
	}
	cfg := filepath.Join(dir, "pkiboard.toml")
	if err := os.WriteFile(cfg, []byte(proc.Config("info", sections)), 0o600); err != nil {
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

// daemon is a running server process: pkiboard, or a baseline.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	done <-chan struct{} // closed when it has exited
}

// start runs a daemon and waits for the address it logs as listening on.
func (in *install) start(bin, role string, args ...string) *daemon {
	cmd := exec.Command(bin, append([]string{"--config", in.config, "--role=" + role}, args...)...)
	if *profileFlag != "" {
		profiles++
		cmd.Env = append(os.Environ(), fmt.Sprintf("PKIBOARD_CPUPROFILE=%s/%s-%d.prof", *profileFlag, role, profiles))
	}
	// Keep the start-up only: the daemons log a line per request under load.
	p, err := proc.StartWith(role, cmd, proc.Options{KeepLines: 50})
	if err != nil {
		fatalf("%v", err)
	}
	return &daemon{cmd: p.Cmd, addr: p.Addr, done: p.Exited()}
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
func (d *daemon) peakRSS() int64 { return vmHWM(d.cmd.Process.Pid) }

// vmHWM returns the peak resident set size of the running process pid, in
// bytes (VmHWM of /proc/PID/status: its own address space's, since exec), or
// -1 when it cannot be read.
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
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
