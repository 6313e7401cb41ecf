package ca

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"pkiboard/wire"
)

// benchCSRs makes n CSRs for distinct SIDs ahead of the benchmark.
func benchCSRs(b *testing.B, n int) []Request {
	b.Helper()
	reqs := make([]Request, n)
	for i := range reqs {
		sid := fmt.Sprintf("1155%06d", i)
		reqs[i] = Request{Profile: wire.ProfileStudent, SID: sid, CSR: makeCSR(b, newKey(b), sid), Peer: "127.0.0.1:1"}
	}
	return reqs
}

// BenchmarkEnrollParallel enrolls from 16 goroutines into a durable store
// (fsync on every commit, shared by group commit); it reports the
// certificates stored per commit.
func BenchmarkEnrollParallel(b *testing.B) {
	tc := newCA(b, nil) // the store is in b.TempDir()
	reqs := benchCSRs(b, 64)
	const goroutines = 16
	b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var next atomic.Int64
	commits := tc.db.Commits()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			req := reqs[int(next.Add(1))%len(reqs)]
			if _, err := tc.Enroll(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if n := tc.db.Commits() - commits; n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "writes/commit")
	}
}

// BenchmarkIssueInMemory runs the CSR checks and the signing of Enroll
// without the store: the CPU cost of an enrollment.
func BenchmarkIssueInMemory(b *testing.B) {
	tc := newCA(b, nil)
	reqs := benchCSRs(b, 64)
	now := tc.now()
	b.ResetTimer()
	for i := range b.N {
		req := reqs[i%len(reqs)]
		csr, _, refusal, err := tc.check(req, now)
		if err != nil || refusal != nil {
			b.Fatal(err, refusal)
		}
		if _, err := tc.issue(csr.PublicKey, req, now); err != nil {
			b.Fatal(err)
		}
	}
}
