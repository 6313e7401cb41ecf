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
	"sync"
	"sync/atomic"
	"time"

	"pkiboard/internal/config"
	"pkiboard/wire"
)

// connStats counts a server's connections. Its fields are updated by the
// accept loop and the connection goroutines, and read by `pkiboard stats`.
type connStats struct {
	open     atomic.Int64  // connections being served now
	accepted atomic.Uint64 // connections served since start
	refused  atomic.Uint64 // connections refused busy at accept: max_conns, max_unproven, their source

	mu        sync.Mutex
	anonymous map[wire.Code]uint64 // refusals of peers that had proven nothing, by code
}

// anonymousRefusal counts a refusal of a peer that had proven nothing.
func (s *connStats) anonymousRefusal(code wire.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.anonymous == nil {
		s.anonymous = make(map[wire.Code]uint64)
	}
	s.anonymous[code]++
}

// anonymousRefusals returns the counts of anonymousRefusal, by code name.
func (s *connStats) anonymousRefusals() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.anonymous))
	for code, n := range s.anonymous {
		out[code.String()] = n
	}
	return out
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
	// Refused counts the connections refused busy at accept: at max_conns,
	// at max_unproven, or because their source keeps failing.
	Refused uint64 `json:"refused"`
	// AnonymousRefusals counts the requests and handshakes refused, malformed
	// or too slow, of peers that had proven nothing, by code name.
	AnonymousRefusals map[string]uint64 `json:"anonymous_refusals"`
	// PartialUploads and PartialBytes are the board's interrupted uploads
	// kept for resuming, and their size on disk; absent at the CA.
	PartialUploads *int   `json:"partial_uploads,omitempty"`
	PartialBytes   *int64 `json:"partial_bytes,omitempty"`
	// WatchingBoards is, on the CA, the number of boards watching it
	// (PROTOCOL.md §4.4); absent on the board.
	WatchingBoards *int `json:"watching_boards,omitempty"`
}

// started is when this process started, near enough.
var started = time.Now()

// statsOp returns the "stats" operator command of a daemon whose accept loop
// is srv; more, if set, adds the role's own figures. It collects garbage and
// returns what it can to the operating system first, so that HeapInuse is
// live data and RSS what the daemon still holds.
func statsOp(role string, srv *server, more func(*Stats) error) adminOp {
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

			AnonymousRefusals: srv.stats.anonymousRefusals(),
		}
		if more != nil {
			if err := more(&st); err != nil {
				return nil, fmt.Errorf("stats: %w", err)
			}
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
		return nil, nil, notRunning(role, dir)
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
	if st.WatchingBoards != nil {
		fmt.Fprintf(tw, "boards watching\t%d\n", *st.WatchingBoards)
	}
	if len(st.AnonymousRefusals) > 0 {
		codes := slices.Sorted(maps.Keys(st.AnonymousRefusals))
		parts := make([]string, len(codes))
		for i, code := range codes {
			parts[i] = fmt.Sprintf("%s %d", code, st.AnonymousRefusals[code])
		}
		fmt.Fprintf(tw, "refused, unproven\t%s\n", strings.Join(parts, ", "))
	}
	if st.PartialUploads != nil && st.PartialBytes != nil {
		fmt.Fprintf(tw, "partial uploads\t%d (%s)\n", *st.PartialUploads, mib(uint64(*st.PartialBytes)))
	}
	return tw.Flush()
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// notRunning is the error of a command that needs the daemon role running
// on its data directory dir, when nothing answers on its operator socket.
func notRunning(role, dir string) error {
	return fmt.Errorf("no %s is running: nothing answers on %s; start it (pkiboard --role=%s), or give the data directory of the running one (%s.data_dir or --data-dir)",
		role, filepath.Join(dir, adminSocketName), role, role)
}
