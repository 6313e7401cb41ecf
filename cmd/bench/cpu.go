package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux the bench runs on).
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user and system) process pid has used so far,
// from /proc/PID/stat; -1 if it cannot be read.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): the state is field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * clockTick
}

// selfCPU returns the CPU time this program (the load generators) has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU time a server process and this program use over
// a measurement window.
type cpuMeter struct {
	pid         int
	server, own time.Duration
	wall        time.Time
}

// meterCPU starts measuring process pid and this program.
func meterCPU(pid int) *cpuMeter {
	return &cpuMeter{pid: pid, server: procCPU(pid), own: selfCPU(), wall: time.Now()}
}

// perOp returns the CPU time per operation, in microseconds, that the server
// and this program used since meterCPU, when rate operations a second were
// completed: CPU seconds a second over operations a second.
func (m *cpuMeter) perOp(rate float64) (server, own float64) {
	wall := time.Since(m.wall).Seconds()
	ops := rate * wall
	if ops <= 0 {
		return 0, 0
	}
	server = float64(procCPU(m.pid)-m.server) / float64(time.Microsecond) / ops
	own = float64(selfCPU()-m.own) / float64(time.Microsecond) / ops
	return server, own
}
