package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// goBench runs `go test -bench` for pattern in pkg, count times, keeps the raw
// output (for benchstat, which it runs and records), and returns the MB/s of
// each benchmark name (without the -N GOMAXPROCS suffix), one per run.
func (r *runner) goBench(pkg, pattern, benchtime string) map[string][]float64 {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime, "-count", strconv.Itoa(r.count), pkg}
	logf("go %s", strings.Join(args, " "))
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		fatalf("go test -bench %s: %v\n%s", pkg, err, out)
	}
	raw, err := os.CreateTemp("", "pkibench-*.txt")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.Remove(raw.Name())
	raw.Write(out)
	raw.Close()
	if stat, err := exec.Command("benchstat", raw.Name()).CombinedOutput(); err == nil {
		r.raw("benchstat %s (%s):\n%s", pkg, pattern, stat)
	} else {
		fatalf("benchstat: %v\n%s (make bench installs it)", err, stat)
	}
	return parseMBs(out)
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+.*?([\d.]+) MB/s`)

func parseMBs(out []byte) map[string][]float64 {
	res := map[string][]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			res[m[1]] = append(res[m[1]], v)
		}
	}
	return res
}

func (r *runner) rc4() []row {
	mbs := r.goBench("./rc4", `^(BenchmarkXORKeyStream|BenchmarkStdlibRC4)$`, "1s")
	ossl := r.opensslRC4()
	var rows []row
	for _, size := range []string{"16KiB", "1MiB"} {
		ours := mbs["BenchmarkXORKeyStream/"+size]
		std := mbs["BenchmarkStdlibRC4/"+size]
		rows = append(rows,
			row{name: "rc4 throughput, " + size, baseline: "Go crypto/rc4", unit: "MB/s", ours: ours, base: std, target: 1.0},
			row{name: "rc4 throughput, " + size, baseline: "openssl speed -evp rc4 -elapsed (16 KiB blocks)", unit: "MB/s", ours: ours, base: ossl, target: 1.0},
		)
	}
	return rows
}

// opensslRC4 runs `openssl speed -evp rc4` on 16 KiB blocks count times and
// returns MB/s. -elapsed makes openssl divide by wall time, as `go test
// -bench` does; without it openssl divides by its CPU user time, which on a
// busy machine flatters it against the Go rows it is compared with.
var speedLine = regexp.MustCompile(`(?m)^RC4\s+([\d.]+)k`)

func (r *runner) opensslRC4() []float64 {
	var res []float64
	for range r.count {
		out, err := exec.Command("openssl", "speed", "-provider", "legacy", "-provider", "default",
			"-evp", "rc4", "-elapsed", "-seconds", "2", "-bytes", "16384").CombinedOutput()
		if err != nil {
			fatalf("openssl speed: %v\n%s", err, out)
		}
		m := speedLine.FindSubmatch(out)
		if m == nil {
			fatalf("openssl speed: no RC4 line in\n%s", out)
		}
		k, _ := strconv.ParseFloat(string(m[1]), 64)
		res = append(res, k*1000/1e6)
	}
	r.raw("openssl speed -evp rc4 -elapsed, 16 KiB, MB/s: %v", res)
	return res
}

func (r *runner) framing() []row {
	mbs := r.goBench("./wire", `^(BenchmarkFramedTransfer|BenchmarkRawCopy)$`, "2s")
	return []row{{
		name: "framed transfer over loopback TCP, 64 KiB frames", baseline: "raw io.Copy of the same bytes",
		unit: "MB/s", ours: mbs["BenchmarkFramedTransfer"], base: mbs["BenchmarkRawCopy"], target: 0.95,
	}}
}
