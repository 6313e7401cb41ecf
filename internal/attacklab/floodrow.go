package attacklab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// The refusal flood: refusalRequests bad requests in two halves, each source
// sending refusalsPerConn of them on one connection (fewer than the CA's
// source_burst of 32, so that every request is answered and the figure
// measures the refusals rather than the per-source limit).
const (
	refusalRequests = 10000
	refusalsPerConn = 25
	// refusalSpread is how long the first half takes at least: long
	// enough to show the CA's log at one line a second.
	refusalSpread = 2500 * time.Millisecond
)

// refusalPhase is what one half of the flood wrote and logged.
type refusalPhase struct {
	Requests     int
	Elapsed      time.Duration
	DBBefore     int64 // bytes of ca.db (and any ca.db-* file but the -shm) before
	DBAfter      int64 // and after
	DBChanged    bool  // their content changed
	Lines        int   // the CA's log lines
	RefusalLines int   // of those, about refusals
}

// floodFinding is what the anonymous refusal flood observed.
type floodFinding struct {
	Sent    int            // bad requests sent
	Conns   int            // connections, one per source
	Answers map[string]int // the CA's answers, by code
	Failed  int            // requests with no answer
	LastErr string
	Quiet   refusalPhase // the first half, alone: what it cost the CA's disk and log
	Student output       // a student's enrollment during the second half
	During  bool         // the flood went on until she was done
	Counted uint64       // how much the CA's anonymous_refusals (stats) grew
}

// playRefusalFlood sends the CA bad enrollment requests — a token it never
// made, a root that is not its own, no token, a bad SID — from many
// sources: first half alone, measuring ca.db and the log; second half while
// a student enrolls.
func playRefusalFlood(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &floodFinding{Answers: map[string]int{}}
	env, err := l.tokenEnv(ctx, "bob-flood") // before the measures: a token is a write
	if err != nil {
		return f, err
	}
	counted, err := l.anonymousRefusals(ctx)
	if err != nil {
		return f, err
	}
	csr, _, err := ownCSR("bob-flood")
	if err != nil {
		return f, err
	}
	var mu sync.Mutex
	var conn atomic.Int64
	// flood sends at least requests, spread evenly over spread (or as
	// fast as it can), and goes on until until is closed.
	flood := func(requests int, spread time.Duration, until <-chan struct{}) {
		var wg sync.WaitGroup
		var sent, k atomic.Int64
		start := time.Now()
		interval := spread / time.Duration(requests/refusalsPerConn)
		for range floodParallel {
			wg.Go(func() {
				for {
					select {
					case <-ctx.Done():
						return
					default:
					}
					if sent.Load() >= int64(requests) {
						select {
						case <-until:
							return
						default:
						}
					}
					sent.Add(refusalsPerConn)
					if d := time.Until(start.Add(time.Duration(k.Add(1)-1) * interval)); d > 0 {
						time.Sleep(d)
					}
					i := int(conn.Add(1))
					src := fmt.Sprintf("127.%d.%d.%d", 8+i/60000, i/250%240, i%250+1)
					ans, failed, last := l.badRequests(ctx, src, i, csr)
					mu.Lock()
					f.Conns++
					for code, n := range ans {
						f.Answers[code] += n
						f.Sent += n
					}
					f.Sent += failed
					f.Failed += failed
					if last != "" {
						f.LastErr = last
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}

	// The first half, alone.
	db := l.path(caDataDir, ca.DBFile)
	mark := l.ca.Mark()
	beforeSize, beforeSum := dbFiles(db)
	start := time.Now()
	closed := make(chan struct{})
	close(closed)
	flood(refusalRequests/2, refusalSpread, closed)
	f.Quiet.Elapsed = time.Since(start)
	time.Sleep(50 * time.Millisecond) // the CA answers before it logs: let the last line out
	afterSize, afterSum := dbFiles(db)
	f.Quiet.Requests = f.Sent
	f.Quiet.DBBefore, f.Quiet.DBAfter, f.Quiet.DBChanged = beforeSize, afterSize, beforeSum != afterSum
	for _, r := range l.ca.Since(mark) {
		f.Quiet.Lines++
		if strings.Contains(r.Msg(), "refused") || r.Str("code") != "" || r.Str("last_code") != "" {
			f.Quiet.RefusalLines++
		}
	}

	// The second half, while a student enrolls; it goes on until she is
	// done.
	done := make(chan struct{})
	var studentErr error
	go func() {
		defer close(done)
		f.Student, studentErr = runCmdIn(ctx, "", env, l.opts.Bin, "--config", l.config, "enroll", "--sid", "bob-flood",
			"--out", filepath.Join(dir, "bob-flood"), "--ca-addr", l.ca.Addr)
	}()
	flood(refusalRequests/2, 0, done)
	<-done
	f.During = true
	if studentErr != nil {
		return f, studentErr
	}
	now, err := l.anonymousRefusals(ctx)
	f.Counted = now - counted
	return f, err
}

// badRequests sends refusalsPerConn bad requests on one connection from src
// and returns the CA's answers by code, and how many got none.
func (l *Lab) badRequests(ctx context.Context, src string, seed int, csr []byte) (answers map[string]int, failed int, lastErr string) {
	answers = map[string]int{}
	wc, err := dialFrom(ctx, src, l.ca.Addr)
	if err != nil {
		return answers, refusalsPerConn, err.Error()
	}
	defer wc.Close()
	for i := range refusalsPerConn {
		req := badRequest(seed*refusalsPerConn+i, csr, keys.Fingerprint(l.root))
		var m wire.Message
		if err = wc.WriteMessage(req); err == nil {
			m, err = wc.ReadMessage()
		}
		if err != nil {
			return answers, refusalsPerConn - i, err.Error()
		}
		if e, ok := m.(*wire.Error); ok {
			answers[e.Code.String()]++
		} else {
			answers[m.Type().String()]++
		}
	}
	return answers, 0, ""
}

// badRequest returns the n-th request of the flood: in turn, a token the CA
// never made, a root that is not the CA's, no token under policy "token", and
// a SID the CA's pattern refuses. Each is refused before the peer proves
// anything (steps 2 to 6 of PROTOCOL.md §4.2).
func badRequest(n int, csr []byte, root [32]byte) *wire.EnrollRequest {
	req := &wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: wire.ProfileStudent,
		SID: fmt.Sprintf("stranger-%d", n), CSR: csr, Root: root, Auth: wire.AuthToken,
		TokenKey: make([]byte, 32), Signature: make([]byte, 64)}
	rand.Read(req.TokenKey)
	rand.Read(req.Signature)
	switch n % 4 {
	case 1:
		rand.Read(req.Root[:])
	case 2:
		req.Auth, req.TokenKey, req.Signature = wire.AuthNone, nil, nil
	case 3:
		req.SID = "../" + req.SID
	}
	return req
}

// dbFiles returns the size of the store's files (path, and any path-*
// beside it) and a digest of their content. The -shm file is left out: it is
// SQLite's WAL index, shared memory of a fixed size that holds no record
// (SQLite rebuilds it from the WAL after a crash), and a read (the token
// lookup of a refusal) may update its read marks.
func dbFiles(path string) (int64, [32]byte) {
	names, _ := filepath.Glob(path + "*")
	h := sha256.New()
	var size int64
	for _, name := range names {
		if strings.HasSuffix(name, "-shm") {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		size += int64(len(data))
		h.Write([]byte(name))
		h.Write(data)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return size, sum
}

// anonymousRefusals returns the CA's count of anonymous refusals (`pkiboard
// stats --role ca --json`), all codes together.
func (l *Lab) anonymousRefusals(ctx context.Context) (uint64, error) {
	out, err := runCmd(ctx, l.opts.Bin, "--config", l.config, "stats", "--role", "ca", "--json")
	if err == nil && out.code != 0 {
		err = fmt.Errorf("pkiboard stats: exit %d: %s", out.code, out.stderr)
	}
	if err != nil {
		return 0, err
	}
	var st struct {
		AnonymousRefusals map[string]uint64 `json:"anonymous_refusals"`
	}
	if err := json.NewDecoder(bytes.NewReader([]byte(out.stdout))).Decode(&st); err != nil {
		return 0, fmt.Errorf("pkiboard stats --json: %w", err)
	}
	var n uint64
	for _, v := range st.AnonymousRefusals {
		n += v
	}
	return n, nil
}

// maxLinesFor returns the refusal log lines allowed over d: one a second,
// and one more for a second begun.
func maxLinesFor(d time.Duration) int { return int(d/time.Second) + 2 }

func (f *floodFinding) judge() (j judgement) {
	q := f.Quiet
	j.did = fmt.Sprintf("sent %d bad enrollment requests (a token the CA never made, a root not its own, no token, a bad SID) on %d connections from as many sources, %d on each; %d of them alone, the rest while a student enrolled",
		f.Sent, f.Conns, refusalsPerConn, q.Requests)
	j.detected = fmt.Sprintf("the CA: %s", answerList(f.Answers))
	perRefusal := "0 bytes"
	if q.Requests > 0 && q.DBAfter != q.DBBefore {
		perRefusal = fmt.Sprintf("%.0f bytes", float64(q.DBAfter-q.DBBefore)/float64(q.Requests))
	}
	j.outcome = fmt.Sprintf("%d refusals alone in %v: ca.db %d bytes before and after, unchanged (%s written per refusal); %d CA log lines in all (at most one a second); counted, not stored: stats' anonymous_refusals +%d; a student enrolled during the flood (%s)",
		q.Requests, q.Elapsed.Round(10*time.Millisecond), q.DBBefore, perRefusal, q.Lines, f.Counted, outcomeOf(f.Student))
	if q.DBChanged {
		j.succeeded = append(j.succeeded, fmt.Sprintf("ca.db changed during %d refusals: %d bytes before, %d after (%s per refusal)", q.Requests, q.DBBefore, q.DBAfter, perRefusal))
	}
	if limit := maxLinesFor(q.Elapsed); q.RefusalLines > limit {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the CA logged %d lines about %d refusals in %v (at most %d: one a second)", q.RefusalLines, q.Requests, q.Elapsed.Round(10*time.Millisecond), limit))
	}
	for code, n := range f.Answers {
		if code == wire.TypeEnrollAccepted.String() {
			j.succeeded = append(j.succeeded, fmt.Sprintf("the CA issued %d certificates to the flood", n))
		} else if !anonymousCode(code) {
			j.problems = append(j.problems, fmt.Sprintf("%d requests answered %s, not a refusal before proof", n, code))
		}
	}
	if f.Failed > 0 {
		j.problems = append(j.problems, fmt.Sprintf("%d requests got no answer (last: %s)", f.Failed, f.LastErr))
	}
	if f.Sent < refusalRequests {
		j.problems = append(j.problems, fmt.Sprintf("only %d requests were sent", f.Sent))
	}
	if f.Student.code != 0 || !f.During {
		j.problems = append(j.problems, fmt.Sprintf("the student did not enroll during the flood: %s", outcomeOf(f.Student)))
	}
	if f.Counted < uint64(f.Sent-f.Failed) {
		j.problems = append(j.problems, fmt.Sprintf("the CA counted %d anonymous refusals, not the %d answered", f.Counted, f.Sent-f.Failed))
	}
	return j
}

// anonymousCode reports whether code is a refusal of the flood's requests
// before the peer proved anything.
func anonymousCode(code string) bool {
	switch code {
	case wire.CodeTokenInvalid.String(), wire.CodeWrongRoot.String(), wire.CodeTokenRequired.String(), wire.CodeBadSID.String():
		return true
	}
	return false
}

// answerList formats answers by code as "token-invalid ×2500, …", sorted.
func answerList(m map[string]int) string {
	var parts []string
	for _, code := range []string{wire.CodeTokenInvalid.String(), wire.CodeWrongRoot.String(), wire.CodeTokenRequired.String(), wire.CodeBadSID.String()} {
		if n := m[code]; n > 0 {
			parts = append(parts, fmt.Sprintf("`%s` ×%d", code, n))
		}
	}
	for code, n := range m {
		if !anonymousCode(code) {
			parts = append(parts, fmt.Sprintf("%s ×%d", code, n))
		}
	}
	return strings.Join(parts, ", ")
}
