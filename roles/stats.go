package roles

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"pkiboard/internal/config"
)

// connStats counts a server's connections. Its fields are updated by the
// accept loop and the connection goroutines, and read by `pkiboard stats`.
type connStats struct {
	open     atomic.Int64  // connections being served now
	accepted atomic.Uint64 // connections served since start
	refused  atomic.Uint64 // connections refused busy at max_conns
}

// Stats is a running daemon's view of itself, as `pkiboard stats` shows it:
// enough to see from outside whether an attack left goroutines, memory,
// descriptors or connections behind.
type Stats struct {
	Role       string    `json:"role"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	Goroutines int       `json:"goroutines"`
	// HeapInuse is the heap in use after a garbage collection, in bytes: the
	// live data, not garbage waiting to be collected.
	HeapInuse uint64 `json:"heap_inuse"`
	// Sys is the memory the Go runtime holds from the operating system.
	Sys uint64 `json:"sys"`
	// RSS is the resident set size, from /proc/self/status; 0 where unknown.
	RSS uint64 `json:"rss"`
	// FDs is the number of open file descriptors, from /proc/self/fd; -1
	// where unknown.
	FDs       int    `json:"fds"`
	OpenConns int64  `json:"open_conns"`
	MaxConns  int    `json:"max_conns"`
	Accepted  uint64 `json:"accepted"`
	Refused   uint64 `json:"refused"`
	// AnonymousRefusals counts, by code name, the requests the daemon
	// refused since it started before the peer proved possession of
	// anything (PROTOCOL.md §4.2, §6.2): counted, never stored. Null where
	// the daemon does not count them.
	AnonymousRefusals map[string]uint64 `json:"anonymous_refusals"`
}

// started is when this process started, near enough.
var started = time.Now()

// statsOp returns the "stats" operator command of a daemon whose accept loop
// is srv; extra, when set, adds the role's own figures. It collects garbage
// and returns what it can to the operating system first, so that HeapInuse is
// live data and RSS what the daemon still holds.
func statsOp(role string, srv *server, extra func(*Stats)) adminOp {
	return func(context.Context, json.RawMessage) (any, error) {
		runtime.GC() // twice: a sync.Pool keeps its objects through one collection
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := Stats{
			Role:       role,
			PID:        os.Getpid(),
			Started:    started.UTC().Truncate(time.Second),
			Goroutines: runtime.NumGoroutine(),
			HeapInuse:  ms.HeapInuse,
			Sys:        ms.Sys,
			RSS:        residentSetSize(),
			FDs:        openFDs(),
			OpenConns:  srv.stats.open.Load(),
			MaxConns:   srv.limits.MaxConns,
			Accepted:   srv.stats.accepted.Load(),
			Refused:    srv.stats.refused.Load(),
		}
		if extra != nil {
			extra(&st)
		}
		return st, nil
	}
}

// residentSetSize returns VmRSS from /proc/self/status in bytes, or 0.
func residentSetSize() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// openFDs returns the number of the process's open file descriptors, or -1.
func openFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries) - 1 // the directory being read is one of them
}

// DaemonStats asks the running daemon of role ("ca" or "board") for its
// Stats and prints them, as a table or JSON. It fails when that daemon is not
// running: stats are about a live process.
func DaemonStats(ctx context.Context, cfg *config.Config, role string, asJSON bool, w io.Writer) error {
	var dir string
	switch role {
	case "ca":
		dir = cfg.CA.DataDir
	case "board":
		dir = cfg.Board.DataDir
	default:
		return fmt.Errorf("stats: say which daemon, --role ca or --role board (not %q)", role)
	}
	var st Stats
	err := callAdmin(ctx, dir, "stats", struct{}{}, &st, func() (map[string]adminOp, func() error, error) {
		return nil, nil, fmt.Errorf("no %s is running: nothing answers on %s", role, filepath.Join(dir, adminSocketName))
	})
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	if asJSON {
		return printJSON(w, st)
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "%s\tpid %d, up %s\n", st.Role, st.PID, time.Since(st.Started).Round(time.Second))
	fmt.Fprintf(tw, "goroutines\t%d\n", st.Goroutines)
	fmt.Fprintf(tw, "heap in use\t%s (after GC)\n", mib(st.HeapInuse))
	if st.RSS > 0 {
		fmt.Fprintf(tw, "resident\t%s\n", mib(st.RSS))
	}
	fmt.Fprintf(tw, "runtime total\t%s\n", mib(st.Sys))
	if st.FDs >= 0 {
		fmt.Fprintf(tw, "descriptors\t%d\n", st.FDs)
	}
	fmt.Fprintf(tw, "connections\t%d open (max_conns %d), %d accepted, %d refused busy\n", st.OpenConns, st.MaxConns, st.Accepted, st.Refused)
	if st.Role == "ca" {
		var total uint64
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(st.AnonymousRefusals)) {
			total += st.AnonymousRefusals[code]
			parts = append(parts, fmt.Sprintf("%s %d", code, st.AnonymousRefusals[code]))
		}
		line := fmt.Sprintf("%d (counted, not stored)", total)
		if len(parts) > 0 {
			line += ": " + strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "anonymous refusals\t%s\n", line)
	}
	return tw.Flush()
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
