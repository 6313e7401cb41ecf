package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pkiboard/session"
	"pkiboard/wire"
)

// curveLevels are the concurrent students of the cost curve's session rows.
var curveLevels = []int{64, 256, 1024}

// idleLevels are the idle connections of the memory rows.
var idleLevels = []int{1000, 4000}

// curveLimits are the limits of every daemon of the curve group, in place of
// loadLimits: room for 4,000 connections at once from 127.0.0.1, none of them
// refused for its source or for proving nothing yet (source_burst = 0 turns
// the per-source buckets off; max_unproven = max_conns never crowds a source),
// and timeouts longer than a measurement, so that the curve measures the
// board and not the limiter (roles/limit.go).
const curveLimits = `max_conns = 8192
max_unproven = 8192
source_burst = 0
read_timeout = "120s"
handshake_timeout = "120s"
idle_timeout = "120s"`

// curve is the row group "curve" (issue 17, deliverable 4): how the cost
// grows with the work — board sessions at 64, 256 and 1,024 concurrent
// students, board memory per idle connection, the assignment listing with
// 100,000 submissions stored, CA issuance with 1,000,000 certificates
// stored — each a small table in the results, and charts in bench/.
func (r *runner) curve() []row {
	parts := strings.Split(*curveParts, ",")
	var rows []row
	if slices.Contains(parts, "board") {
		sess, idle := r.curveBoard()
		rows = append(rows, sess...)
		rows = append(rows, idle...)
	}
	if slices.Contains(parts, "listing") {
		rows = append(rows, r.curveListing()...)
	}
	if slices.Contains(parts, "ca") {
		rows = append(rows, r.curveCA()...)
	}
	return rows
}

var curveParts = flag.String("curve", "board,listing,ca", "the parts of the curve row group to run (board, listing, ca)")

// curveBoard measures the sessions curve and the memory per idle connection
// against one real board process.
func (r *runner) curveBoard() (sess, idle []row) {
	in := newInstallWith(map[string]string{"ca": curveLimits, "board": curveLimits})
	defer in.remove()
	ca := in.start(r.bin, "ca")
	defer ca.stop()
	board := in.start(r.bin, "board", "--ca-addr", ca.addr)
	defer board.stop()
	start := time.Now()
	students := enrollStudents(in, ca.addr, "ecdsa-p256", curveLevels[len(curveLevels)-1])
	logf("curve: %d students enrolled in %.1fs", len(students), time.Since(start).Seconds())

	idle = r.curveIdle(board, students)

	type level struct{ rate, p50, p99, cpu []float64 }
	levels := make([]level, len(curveLevels))
	// Alternate the levels within each run, so that all see the same machine.
	for run := range r.count {
		for li, n := range curveLevels {
			m := meterCPU(board.cmd.Process.Pid)
			rate, lat := sessionCurveLoad(board.addr, students[:n])
			c, _ := m.perOp(rate)
			l := &levels[li]
			l.rate, l.cpu = append(l.rate, rate), append(l.cpu, c)
			l.p50, l.p99 = append(l.p50, percentile(lat, 50)), append(l.p99, percentile(lat, 99))
			logf("curve run %d, %d students: %.0f sessions/s, p50 %.1f ms, p99 %.1f ms, board CPU %.0f µs/session",
				run+1, n, rate, l.p50[run], l.p99[run], c)
		}
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "cost curve, board sessions (ECDSA P-256, medians of %d runs):\n", r.count)
	fmt.Fprintf(&tbl, "| concurrent students | sessions/s | p50 ms | p99 ms | board CPU µs/session |\n|---|---|---|---|---|\n")
	var pts []curvePoint
	for li, n := range curveLevels {
		l := levels[li]
		fmt.Fprintf(&tbl, "| %d | %s | %s | %s | %s |\n", n, num(median(l.rate)), num(median(l.p50)), num(median(l.p99)), num(median(l.cpu)))
		r.raw("curve %d students: sessions/s %v; p50 ms %v; p99 ms %v; board CPU µs %v", n, l.rate, l.p50, l.p99, l.cpu)
		pts = append(pts, curvePoint{x: float64(n), rate: median(l.rate), p50: median(l.p50), p99: median(l.p99)})
		name := fmt.Sprintf("curve: board sessions, %d concurrent students, ECDSA-P256", n)
		sess = append(sess,
			row{name: name, baseline: "sessions per second (dial to verified receipt)", unit: "sessions/s", ours: l.rate, note: "reported"},
			row{name: "  latency p50", baseline: "per session, dial to verified receipt", unit: "ms", ours: l.p50, note: "reported"},
			row{name: "  latency p99", baseline: "per session, dial to verified receipt", unit: "ms", ours: l.p99, note: "reported"},
		)
	}
	r.raw("%s", tbl.String())
	logf("%s", tbl.String())
	if err := writeSessionsChart(chartPath("sessions-curve.png"), pts); err != nil {
		logf("curve: chart: %v", err)
	}
	return sess, idle
}

// sessionCurveLoad is sessionLoad that also returns each session's wall
// time, from dial to verified receipt, in milliseconds.
func sessionCurveLoad(addr string, students []*student) (float64, []float64) {
	lats := make([][]float64, len(students))
	rate := throughput(len(students), func(i int) (func() error, func()) {
		s := students[i]
		cfg := &session.ClientConfig{SID: s.sid, Certificate: s.cert, Key: s.key, Root: s.root, BoardName: "blackboard"}
		sum := sha256.Sum256(s.msg)
		return func() error {
			t := time.Now()
			if err := submitOnce(addr, cfg, s.msg, sum); err != nil {
				return fmt.Errorf("session %s: %w", s.sid, err)
			}
			lats[i] = append(lats[i], float64(time.Since(t).Microseconds())/1000)
			return nil
		}, nil
	})
	var all []float64
	for _, l := range lats {
		all = append(all, l...)
	}
	return rate, all
}

// curveIdle measures the board's memory per idle connection: n TCP
// connections that sent nothing (the state before the handshake), and n
// sessions whose handshake completed and that wait for their request.
func (r *runner) curveIdle(board *daemon, students []*student) []row {
	pid := board.cmd.Process.Pid
	var rows []row
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "cost curve, board memory per idle connection (VmRSS after − before, over n):\n")
	fmt.Fprintf(&tbl, "| connections | before handshake, KiB/conn | authenticated, waiting for its request, KiB/conn |\n|---|---|---|\n")
	for _, n := range idleLevels {
		var raw, auth []float64
		for range 3 {
			raw = append(raw, idleRSS(pid, n, func() (func(), error) {
				c, err := net.Dial("tcp", board.addr)
				if err != nil {
					return nil, err
				}
				return func() { c.Close() }, nil
			}))
		}
		// Each authenticated connection costs a handshake: one run.
		{
			auth = append(auth, idleRSS(pid, n, func() (func(), error) {
				// A student may hold several sessions at once: the
				// connections take the students in turn.
				s := students[int(idleSeq.Add(1))%len(students)]
				cfg := &session.ClientConfig{SID: s.sid, Certificate: s.cert, Key: s.key, Root: s.root, BoardName: "blackboard"}
				nc, err := net.Dial("tcp", board.addr)
				if err != nil {
					return nil, err
				}
				wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord})
				wc.SetDeadline(time.Now().Add(60 * time.Second))
				sc, err := session.Client(wc, cfg)
				if err != nil {
					nc.Close()
					return nil, err
				}
				return func() { sc.Close() }, nil
			}))
		}
		logf("curve idle %d connections: %.1f KiB each before the handshake, %.1f KiB authenticated", n, median(raw), median(auth))
		r.raw("curve idle %d connections, KiB each: before handshake %v; authenticated %v", n, raw, auth)
		fmt.Fprintf(&tbl, "| %d | %s | %s |\n", n, num(median(raw)), num(median(auth)))
		rows = append(rows,
			row{name: fmt.Sprintf("curve: board memory per idle connection, %d connected, nothing sent", n),
				baseline: "VmRSS delta / n", unit: "KiB", ours: raw, note: "reported"},
			row{name: fmt.Sprintf("curve: board memory per idle session, %d authenticated, waiting for the request", n),
				baseline: "VmRSS delta / n", unit: "KiB", ours: auth, note: "reported"},
		)
	}
	r.raw("%s", tbl.String())
	logf("%s", tbl.String())
	return rows
}

var idleSeq atomic.Int64

// idleRSS opens n connections with open (64 at a time), lets the board
// settle, and returns its VmRSS growth per connection, in KiB; then closes
// them and waits for the board to let them go.
func idleRSS(pid, n int, open func() (func(), error)) float64 {
	time.Sleep(500 * time.Millisecond)
	before := procStatus(pid, "VmRSS")
	closers := make([]func(), n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := open()
				if err != nil {
					fatalf("curve: idle connection %d: %v", i, err)
				}
				closers[i] = c
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Second)
	after := procStatus(pid, "VmRSS")
	for _, c := range closers {
		c()
	}
	time.Sleep(time.Second)
	return float64(after-before) / 1024 / float64(n)
}

// procStatus returns a size field of /proc/PID/status (VmRSS, VmHWM), in
// bytes; -1 if it cannot be read.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// resetPeakRSS resets the process's VmHWM to its VmRSS (Linux's clear_refs
// 5); it fails silently where it may not.
func resetPeakRSS(pid int) {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// runTimed runs a pkiboard command and returns its wall time and peak RSS.
//
// The peak is VmHWM of /proc/PID/status, read every 2 ms while the command
// runs (what it reaches in its last 2 ms can be missed), not getrusage's
// ru_maxrss: os/exec starts a child with vfork, sharing this program's
// address space until exec, and Linux then counts this program's own peak
// into the child's ru_maxrss — a command of 43 MiB reported this program's
// 223 MiB.
func runTimed(bin string, args ...string) (wall time.Duration, maxRSS int64, stdout []byte) {
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fatalf("%s %v: %v", bin, args, err)
	}
	done := make(chan struct{})
	peak := make(chan int64)
	go func() {
		var most int64 = -1
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			most = max(most, vmHWM(cmd.Process.Pid))
			select {
			case <-done:
				peak <- most
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	wall = time.Since(start)
	close(done)
	maxRSS = <-peak
	if err != nil {
		fatalf("%s %v: %v\n%s", bin, args, err, tail(errb.String()))
	}
	return wall, maxRSS, out.Bytes()
}
