package roles

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/internal/config"
	"pkiboard/session"
	"pkiboard/wire"
)

// testTracked returns c as a server would hand it to a handler, admitted by
// a limiter of the default limits.
func testTracked(t testing.TB, c net.Conn) *tracked {
	t.Helper()
	tk, why := newLimiter(config.Default().Board.Limits, nil).admit(c.RemoteAddr())
	if why != admitted {
		t.Fatalf("a fresh limiter refused a connection: %v", why)
	}
	return &tracked{c: c, ticket: tk, stats: new(connStats)}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)} }
func tcp(ip string) net.Addr             { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
func limits(burst int, rate float64, unproven int) config.Limits {
	l := config.Default().Board.Limits
	l.SourceBurst, l.SourceRate, l.MaxUnproven = burst, rate, unproven
	return l
}

func TestSourceOf(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{tcp("192.0.2.7"), "192.0.2.7/32"},
		{tcp("::ffff:192.0.2.7"), "192.0.2.7/32"}, // IPv4-mapped: the same source
		{tcp("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64"},
		{tcp("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64"}, // one /64, one source
		{tcp("2001:db8:1:3::1"), "2001:db8:1:3::/64"},
		{&net.UnixAddr{Name: "@", Net: "unix"}, "invalid Prefix"},
	}
	for _, tt := range tests {
		if got := sourceOf(tt.addr).String(); got != tt.want {
			t.Errorf("sourceOf(%v): got %s, want %s", tt.addr, got, tt.want)
		}
	}
}

// TestSourceBudget is the per-source limit: a source that keeps failing is
// refused after source_burst failures, before anything is read, and earns a
// try back every 1/source_rate seconds; other sources are not affected, and
// proven sessions from the same source never spend its budget.
func TestSourceBudget(t *testing.T) {
	clock := newClock()
	l := newLimiter(limits(4, 2, 256), clock.now)
	a, b := tcp("192.0.2.1"), tcp("192.0.2.2")
	failOnce := func(addr net.Addr) refusal {
		tk, why := l.admit(addr)
		if why == admitted {
			tk.fail()
			tk.close()
		}
		return why
	}
	for i := range 4 {
		if why := failOnce(a); why != admitted {
			t.Fatalf("failure %d of a burst of 4: refused %v", i+1, why)
		}
	}
	if why := failOnce(a); why != refusedSource {
		t.Fatalf("after 4 failures: got %v, want the source refused", why)
	}
	if why := failOnce(b); why != admitted {
		t.Errorf("another source: refused %v", why)
	}
	// A source that proves itself is never counted, however often.
	for range 100 {
		tk, why := l.admit(b)
		if why != admitted {
			t.Fatalf("a source whose sessions succeed was refused: %v", why)
		}
		tk.prove()
		tk.fail() // a failure after the proof does not count
		tk.close()
	}
	clock.add(499 * time.Millisecond)
	if why := failOnce(a); why != refusedSource {
		t.Errorf("after 499 ms at 2 a second: got %v, want still refused", why)
	}
	clock.add(time.Millisecond)
	if why := failOnce(a); why != admitted {
		t.Errorf("after 500 ms at 2 a second: refused %v, want one more try", why)
	}
	if _, bySource, _ := l.stats(); bySource != 2 {
		t.Errorf("refusals by source: got %d, want 2", bySource)
	}
}

// TestSourceReservesATokenPerConnection checks that a source's unproven
// connections in flight each hold a token: a source holds at most
// source_burst of them, and one that proves itself or ends without failing
// gives its token back.
func TestSourceReservesATokenPerConnection(t *testing.T) {
	l := newLimiter(limits(3, 1, 256), newClock().now)
	a := tcp("2001:db8::1")
	var held []*ticket
	for range 3 {
		tk, why := l.admit(a)
		if why != admitted {
			t.Fatalf("refused %v", why)
		}
		held = append(held, tk)
	}
	if _, why := l.admit(tcp("2001:db8::2")); why != refusedSource {
		t.Fatalf("a fourth connection from the same /64: got %v, want refused", why)
	}
	held[0].prove()
	tk, why := l.admit(a)
	if why != admitted {
		t.Fatalf("after one proved itself: refused %v", why)
	}
	tk.close() // ended without failing: its token comes back
	held[1].close()
	for range 2 {
		if tk, why := l.admit(a); why != admitted {
			t.Fatalf("after two ended: refused %v", why)
		} else {
			defer tk.close()
		}
	}
}

// TestMaxUnproven is the global budget: at most max_unproven connections that
// have proven nothing, whatever their sources; a proven one leaves the budget
// at once. Once half of it is taken, a source may hold only crowdedShare.
func TestMaxUnproven(t *testing.T) {
	l := newLimiter(limits(32, 4, 16), newClock().now)
	var held []*ticket
	// One source takes what it may: up to half of the budget freely, then no
	// more than crowdedShare.
	for {
		tk, why := l.admit(tcp("192.0.2.1"))
		if why != admitted {
			if why != refusedUnproven {
				t.Fatalf("got %v, want refusedUnproven", why)
			}
			break
		}
		held = append(held, tk)
	}
	if len(held) != 8 {
		t.Errorf("one source took %d of 16 unproven slots, want 8 (half, then at most %d)", len(held), crowdedShare)
	}
	for i := range 8 {
		tk, why := l.admit(tcp(fmt.Sprintf("192.0.2.%d", 10+i/crowdedShare)))
		if why != admitted {
			t.Fatalf("connection %d from another source: refused %v", i, why)
		}
		held = append(held, tk)
	}
	if _, why := l.admit(tcp("192.0.2.99")); why != refusedUnproven {
		t.Fatalf("a 17th unproven connection: got %v, want refusedUnproven", why)
	}
	held[0].prove()
	if _, why := l.admit(tcp("192.0.2.99")); why != admitted {
		t.Errorf("after one proved itself: refused %v", why)
	}
	if n, _, byUnproven := l.stats(); n != 16 || byUnproven != 2 {
		t.Errorf("stats: %d unproven, %d refused; want 16 and 2", n, byUnproven)
	}
}

// TestFailExhausts checks what the CA's connection, which stays open after a
// refusal, is told: go on while the source has tokens, stop when it has none.
func TestFailExhausts(t *testing.T) {
	l := newLimiter(limits(3, 1, 256), newClock().now)
	tk, _ := l.admit(tcp("192.0.2.1"))
	for i, want := range []bool{false, false, true} {
		if got := tk.fail(); got != want {
			t.Errorf("failure %d of 3: exhausted %v, want %v", i+1, got, want)
		}
	}
	tk.close()
}

// TestSourceTableIsBounded checks that the table of sources holds at most
// maxSources entries, that new sources then share one bucket, and that
// sources holding nothing are swept.
func TestSourceTableIsBounded(t *testing.T) {
	clock := newClock()
	l := newLimiter(limits(2, 1, 256), clock.now)
	l.maxSources = 8
	for i := range 20 {
		tk, why := l.admit(tcp(fmt.Sprintf("198.51.100.%d", i)))
		if why != admitted && i < 8 {
			t.Fatalf("source %d: refused %v", i, why)
		}
		if tk != nil {
			tk.fail()
			tk.close()
		}
	}
	if n := len(l.sources); n != 8 {
		t.Errorf("%d sources in a table of 8", n)
	}
	// The 12 others shared the overflow bucket of 2: two failed, ten were
	// refused.
	if _, bySource, _ := l.stats(); bySource != 10 {
		t.Errorf("refused %d new sources while the table was full, want 10", bySource)
	}
	clock.add(sweepEvery)
	if _, why := l.admit(tcp("203.0.113.1")); why != admitted {
		t.Errorf("after the sweep: refused %v", why)
	}
	if n := len(l.sources); n != 1 {
		t.Errorf("after the sweep: %d sources, want 1", n)
	}
}

func TestPeerFailure(t *testing.T) {
	for code, want := range map[wire.Code]bool{
		0: false, wire.CodeInternal: false, wire.CodeBusy: false, wire.CodeStorage: false, wire.CodeCRLUnavailable: false,
		wire.CodeMalformed: true, wire.CodeTimeout: true, wire.CodeFrameTooLarge: true, wire.CodeUnknownCA: true,
		wire.CodeStaleHello: true, wire.CodeBadHelloSignature: true, wire.CodeTokenInvalid: true,
	} {
		if got := peerFailure(code); got != want {
			t.Errorf("peerFailure(%v): got %v want %v", code, got, want)
		}
	}
}

// dialFrom connects to addr from the loopback address src (127.0.0.2, …), so
// that one test can play several sources.
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	return c
}

// TestServerRefusesAFailingSource runs the accept loop with a handler that
// proves a peer sending "ok" and fails any other: a source that keeps failing
// is answered busy at accept, with nothing read, and its refusals are logged
// in one line; a student on another source, and proven sessions, are served.
func TestServerRefusesAFailingSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	l := testLimits(64)
	l.SourceBurst, l.SourceRate, l.MaxUnproven = 4, 1, 64
	srv := &server{log: zap.New(core), limits: l, now: newClock().now} // a clock that stands still
	var read atomic.Int32
	srv.handle = func(ctx context.Context, c net.Conn, track *tracked) {
		p, err := wire.ReadFrame(c, 16, nil)
		read.Add(1)
		if err == nil && string(p) == "ok" {
			track.proven()
			wire.WriteFrame(c, []byte("served")) //nolint:errcheck // the client checks
			return
		}
		track.failed(wire.CodeMalformed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx, ln) }()
	defer func() { cancel(); waitStopped(t, done, "serve did not stop") }()

	// exchange sends p from src and returns the server's answer: "served",
	// the text of an Error, or "" when it closed without one.
	exchange := func(src string, p []byte) string {
		c := dialFrom(t, src, ln.Addr().String())
		defer c.Close()
		wire.WriteFrame(c, p) //nolint:errcheck // the server may have refused
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := wire.ReadFrame(c, 1<<10, nil)
		if err != nil {
			return ""
		}
		if m, err := wire.Unmarshal(got); err == nil {
			if e, ok := m.(*wire.Error); ok {
				return e.Code.String() + ": " + e.Text
			}
		}
		return string(got)
	}
	for i := range 4 {
		if got := exchange("127.0.0.2", []byte("junk")); got != "" {
			t.Fatalf("failure %d of a burst of 4: got %q", i, got)
		}
	}
	// Proven sessions from the failing source's neighbours, and from itself
	// before it ran out, are unaffected; now it is refused before a read.
	if got := exchange("127.0.0.3", []byte("ok")); got != "served" {
		t.Errorf("another source: got %q, want served", got)
	}
	before := read.Load()
	for range 5 {
		if got, want := exchange("127.0.0.2", []byte("ok")), "busy: too many failed attempts from your address; try again in a few seconds"; got != want {
			t.Errorf("the failing source: got %q, want %q", got, want)
		}
	}
	if n := read.Load() - before; n != 0 {
		t.Errorf("the server read %d frames from a refused source", n)
	}
	if got := exchange("127.0.0.1", []byte("ok")); got != "served" {
		t.Errorf("a student on another source: got %q, want served", got)
	}
	if n := logs.FilterMessageSnippet("their source keeps failing").Len(); n != 1 {
		t.Errorf("5 refusals logged in %d lines, want 1", n)
	}
	if got := srv.stats.refused.Load(); got != 5 {
		t.Errorf("refused: got %d, want 5", got)
	}
	if got := srv.stats.anonymousRefusals()["malformed"]; got != 4 {
		t.Errorf("anonymous refusals: got %d malformed, want 4", got)
	}
}

// TestLineBudget checks the budget of refusal log lines: a burst of
// lineBurst, then one a second, each saying how many were held back.
func TestLineBudget(t *testing.T) {
	clock := newClock()
	var b lineBudget
	logged := 0
	for range 100 {
		if _, ok := b.take(clock.now()); ok {
			logged++
		}
	}
	if logged != lineBurst {
		t.Errorf("100 lines at once: %d logged, want %d", logged, lineBurst)
	}
	clock.add(time.Second)
	if held, ok := b.take(clock.now()); !ok || held != 100-lineBurst {
		t.Errorf("a second later: got %v with %d held back, want a line saying %d", ok, held, 100-lineBurst)
	}
	if _, ok := b.take(clock.now()); ok {
		t.Error("a second line in the same second was logged")
	}
}

// TestBoardRefusalLinesAreRateLimited checks that sessions refused before
// the student proved anything are logged for a burst of lineBurst, then held
// back (and counted, for the next line), while each still counts against
// its source.
func TestBoardRefusalLinesAreRateLimited(t *testing.T) {
	p := newStepPKI(t)
	core, logs := observer.New(zapcore.InfoLevel)
	h := &boardHandler{
		limits: config.Default().Board.Limits,
		log:    zap.New(core),
		now:    newClock().now, // a clock that stands still: no line is earned back
	}
	h.session.Store(&session.ServerConfig{
		Certificate: p.board, Key: p.boardK, Root: p.root,
		Status: func() []byte { return nil }, Replays: session.NewReplayCache(0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const n = 25
	stats := new(connStats)
	lim := newLimiter(config.Default().Board.Limits, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tk, _ := lim.admit(c.RemoteAddr())
			h.handle(context.Background(), c, &tracked{c: c, ticket: tk, stats: stats})
			tk.close()
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		wire.WriteFrame(c, []byte{0x7f}) //nolint:errcheck // the board answers
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		wire.ReadFrame(c, 1<<10, nil) //nolint:errcheck // its refusal
		c.Close()
	}
	<-done
	if got := logs.FilterMessageSnippet("session refused").Len(); got != 2*lineBurst {
		t.Errorf("%d refused sessions logged %d lines, want %d (a burst of %d, two lines each)", n, got, 2*lineBurst, lineBurst)
	}
	if got := stats.anonymousRefusals()["unknown-message"]; got != n {
		t.Errorf("anonymous refusals: %d unknown-message, want %d", got, n)
	}
}
