package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// students runs the student role with many IDs against the real CA and board
// and reports IDs per second and the per-ID latency (enroll, session,
// submission, receipt), from the elapsed time each ID's last log line carries.
func (r *runner) students() []row {
	n := *idsFlag
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%06d", i)
	}
	in := newInstall(nil)
	defer in.remove()
	ca := in.start(r.bin, "ca")
	defer ca.stop()
	board := in.start(r.bin, "board", "--ca-addr", ca.addr)
	defer board.stop()

	var rates, p50s, p99s []float64
	for run := range r.count {
		dataDir := in.path(fmt.Sprintf("student-%d", run))
		cmd := exec.Command(r.bin, "--config", in.config, "--role=student", "--ca-addr", ca.addr, "--board-addr", board.addr,
			"--data-dir", dataDir, "--parallel", "64", "--ids", strings.Join(ids, ","))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			fatalf("student run: %v\n%s", err, tail(stderr.String()))
		}
		wall := time.Since(start).Seconds()
		var lat []float64
		sc := bufio.NewScanner(&stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec struct {
				Msg     string `json:"msg"`
				Elapsed string `json:"elapsed"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) != nil || !strings.HasPrefix(rec.Msg, "STEP 6: receipt verified") {
				continue
			}
			if d, err := time.ParseDuration(rec.Elapsed); err == nil {
				lat = append(lat, float64(d.Microseconds())/1000)
			}
		}
		if len(lat) != n {
			fatalf("students: %d of %d IDs reported a receipt", len(lat), n)
		}
		rates = append(rates, float64(n)/wall)
		p50s = append(p50s, percentile(lat, 50))
		p99s = append(p99s, percentile(lat, 99))
		logf("students run %d: %d IDs in %.2fs = %.0f IDs/s, p50 %.1f ms, p99 %.1f ms", run+1, n, wall, rates[run], p50s[run], p99s[run])
	}
	r.raw("students: IDs/s %v; p50 ms %v; p99 ms %v", rates, p50s, p99s)
	name := fmt.Sprintf("students end to end, --ids with %d IDs, --parallel 64 (enroll + session + receipt)", n)
	return []row{
		{name: name, baseline: "IDs per second", unit: "IDs/s", ours: rates, note: "reported"},
		{name: name, baseline: "p50 per ID", unit: "ms", ours: p50s, note: "reported"},
		{name: name, baseline: "p99 per ID", unit: "ms", ours: p99s, note: "reported"},
	}
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
