package ca

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"pkiboard/wire"
)

// benchCSRs makes n CSRs for distinct SIDs ahead of the benchmark.
func benchCSRs(b *testing.B, tc *testCA, n int) []Request {
	b.Helper()
	reqs := make([]Request, n)
	for i := range reqs {
		sid := fmt.Sprintf("1155%06d", i)
		reqs[i] = tc.req(b, wire.ProfileStudent, sid, makeCSR(b, newKey(b), sid), "")
	}
	return reqs
}

// BenchmarkEnrollParallel enrolls from 16 goroutines into a durable store
// (fsync on every commit, shared by group commit); it reports the
// certificates stored per commit.
func BenchmarkEnrollParallel(b *testing.B) {
	tc := newCA(b, nil) // the store is in b.TempDir()
	reqs := benchCSRs(b, tc, 64)
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
	reqs := benchCSRs(b, tc, 64)
	now := tc.now()
	b.ResetTimer()
	for i := range b.N {
		req := reqs[i%len(reqs)]
		c, refusal, err := tc.check(req, now)
		if err != nil || refusal != nil {
			b.Fatal(err, refusal)
		}
		if _, err := tc.issue(c.csr.PublicKey, req, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBogusTokenRSA8192 measures what a stranger costs the CA with an
// RSA-8192 CSR and a token the CA never made, under policy "token": the
// checks of Enroll up to the refusal. Version 1 checked the CSR's signature
// first (1.63 ms a request on the reference machine); version 2 checks the
// token's binding first and never looks at the CSR.
func BenchmarkBogusTokenRSA8192(b *testing.B) {
	tc := newCA(b, func(o *Options) { o.Policy = PolicyToken })
	req := tc.req(b, wire.ProfileStudent, testSID, fixtureCSR(b, "rsa8192.csr"), "pkbt_"+strings.Repeat("A", 43))
	now := tc.now()
	b.ResetTimer()
	for range b.N {
		_, r, err := tc.check(req, now)
		if err != nil || r == nil || r.Code != wire.CodeTokenInvalid {
			b.Fatal(err, r)
		}
	}
}

// BenchmarkBogusTokenRSA8192Enroll is BenchmarkBogusTokenRSA8192 through
// Enroll: the refusal counted, not stored (version 1 stored it, fsync
// included: 5.5 ms a request).
func BenchmarkBogusTokenRSA8192Enroll(b *testing.B) {
	tc := newCA(b, func(o *Options) { o.Policy = PolicyToken })
	req := tc.req(b, wire.ProfileStudent, testSID, fixtureCSR(b, "rsa8192.csr"), "pkbt_"+strings.Repeat("A", 43))
	b.ResetTimer()
	for range b.N {
		if _, err := tc.Enroll(context.Background(), req); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkEnrollTokensParallel is the CA row of make bench without the
// network: 16 goroutines enroll into a durable store under policy "token",
// each request a SID of its own with its token (made before the timer
// starts). It reports the process's CPU time per certificate (the figure to
// compare on a shared machine) and the certificates stored per commit.
func BenchmarkEnrollTokensParallel(b *testing.B) {
	tc := newCA(b, func(o *Options) { o.Policy = PolicyToken })
	reqs := make([]Request, b.N)
	for i := range reqs {
		sid := fmt.Sprintf("11%08d", i)
		reqs[i] = tc.req(b, wire.ProfileStudent, sid, makeCSR(b, newKey(b), sid), tc.token(b, sid))
	}
	const goroutines = 16
	b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var next atomic.Int64
	commits := tc.db.Commits()
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := tc.Enroll(ctx, reqs[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
	if n := tc.db.Commits() - commits; n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "writes/commit")
	}
}
