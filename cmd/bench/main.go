// Command bench is what `make bench` runs: it measures pkiboard against the
// strongest baseline for each claim, in the same run on the same machine, and
// prints one table of ratios (and writes it, with the machine's description and
// every raw figure, to bench/results.txt).
//
// Each row is a ratio, never an absolute time: the machines this runs on are
// shared and noisy, but both sides of a ratio see the same noise. Every figure
// is the median of at least five runs; the table shows the spread.
//
// It expects bin/pkiboard built (make bench builds it) and openssl and benchstat
// on PATH (make bench installs benchstat).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	binFlag     = flag.String("bin", "bin/pkiboard", "the pkiboard binary to measure")
	outFlag     = flag.String("out", "bench/results.txt", "where to write the results")
	countFlag   = flag.Int("count", 6, "runs per measurement (at least 5)")
	onlyFlag    = flag.String("only", "", "comma-separated rows to run (rc4,framing,ca,board,upload,students,revocation,curve); empty for all")
	uploadMiB   = flag.Int("upload-mib", 1024, "size of the upload row's report, MiB")
	idsFlag     = flag.Int("ids", 1000, "IDs in the students row")
	windowFlag  = flag.Duration("window", 3*time.Second, "how long each throughput run lasts")
	boardAlgs   = flag.String("board-algs", "ecdsa-p256,rsa-2048", "key algorithms of the board row")
	selfProf    = flag.String("selfprofile", "", "write a CPU profile of this program (the load generators) to `FILE`")
	profileFlag = flag.String("profile", "", "write a CPU profile of every daemon into `DIR` (PKIBOARD_CPUPROFILE)")
	stepCAFlag  = flag.String("stepca", "step-ca", "the step-ca binary of the ca row's peer (make bench builds it into .tools/)")
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "tls-server":
			tlsServerMain(os.Args[2:])
			return
		case "tls-upload":
			tlsUploadMain(os.Args[2:])
			return
		case "null-ca":
			nullCAMain(os.Args[2:])
			return
		}
	}
	flag.Parse()
	if *countFlag < 5 {
		fatalf("-count must be at least 5")
	}
	if *selfProf != "" {
		f, err := os.Create(*selfProf)
		if err != nil {
			fatalf("%v", err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	bin, err := filepath.Abs(*binFlag)
	if err != nil {
		fatalf("%v", err)
	}
	if _, err := os.Stat(bin); err != nil {
		fatalf("%s: %v (run make build first)", bin, err)
	}
	r := &runner{bin: bin, count: *countFlag}
	r.report = &bytes.Buffer{}
	fmt.Fprintf(r.report, "pkiboard benchmarks, %s\n%s\n\n", time.Now().UTC().Format(time.RFC3339), machine())

	rows := []struct {
		name string
		run  func() []row
	}{
		{"rc4", r.rc4},
		{"framing", r.framing},
		{"ca", r.caIssuance},
		{"board", r.boardSessions},
		{"upload", r.upload},
		{"students", r.students},
		{"revocation", r.revocation},
		{"curve", r.curve},
	}
	var table []row
	for _, rw := range rows {
		if *onlyFlag != "" && !slices.Contains(strings.Split(*onlyFlag, ","), rw.name) {
			continue
		}
		logf("== %s", rw.name)
		table = append(table, rw.run()...)
	}
	out := render(table)
	fmt.Print("\n" + out)
	fmt.Fprintf(r.report, "%s\n", out)
	if err := os.MkdirAll(filepath.Dir(*outFlag), 0o755); err == nil {
		if err := os.WriteFile(*outFlag, r.report.Bytes(), 0o644); err != nil {
			fatalf("%v", err)
		}
		logf("results written to %s", *outFlag)
	}
}

// runner holds what every measurement shares.
type runner struct {
	bin    string
	count  int
	report *bytes.Buffer // raw figures, benchstat tables
}

// row is one line of the table: our figure against the baseline's, both
// medians of the same number of runs.
type row struct {
	name     string
	baseline string
	unit     string
	ours     []float64
	base     []float64 // nil when there is no baseline (the figure is reported only)
	target   float64   // the minimum ratio; 0 for none
	note     string
}

func (r row) ratio() float64 { return median(r.ours) / median(r.base) }

func render(rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| row | ours (median, range) | baseline | baseline (median, range) | ratio | target | met |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		ours := spread(r.ours, r.unit)
		if r.base == nil {
			fmt.Fprintf(&b, "| %s | %s | %s | — | — | — | %s |\n", r.name, ours, r.baseline, r.note)
			continue
		}
		met := "—"
		if r.target > 0 {
			met = "yes"
			if r.ratio() < r.target {
				met = "**no**"
			}
		}
		target := "—"
		if r.target > 0 {
			target = fmt.Sprintf("≥ %.2f×", r.target)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f× | %s | %s |\n", r.name, ours, r.baseline, spread(r.base, r.unit), r.ratio(), target, met)
	}
	return b.String()
}

func spread(v []float64, unit string) string {
	if len(v) == 0 {
		return "—"
	}
	lo, hi := slices.Min(v), slices.Max(v)
	return fmt.Sprintf("%s %s (%s–%s)", num(median(v)), unit, num(lo), num(hi))
}

func num(f float64) string {
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.2f", f)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func percentile(v []float64, p float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

// machine describes where the figures come from.
func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				if _, v, ok := strings.Cut(line, ":"); ok {
					model = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("machine: %s, %d CPUs, Linux %s, %s, load average at start %s",
		model, runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

// raw records a raw figure in the report.
func (r *runner) raw(format string, args ...any) {
	fmt.Fprintf(r.report, format+"\n", args...)
}

// throughput runs n workers at once for one measurement window and returns
// the operations they completed per second. Worker i is set up by setup(i), in
// its own goroutine, which returns the operation to repeat until the window
// ends and what to do afterwards (nil for nothing). An operation's error ends
// the bench.
func throughput(n int, setup func(i int) (op func() error, cleanup func())) float64 {
	var done atomic.Int64
	stop := time.Now().Add(*windowFlag)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op, cleanup := setup(i)
			if cleanup != nil {
				defer cleanup()
			}
			for time.Now().Before(stop) {
				if err := op(); err != nil {
					fatalf("%v", err)
				}
				done.Add(1)
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds()
}
