package roles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/internal/config"
	"pkiboard/wire"
)

// testLimits are small limits for the accept loop's tests.
func testLimits(maxConns int) config.Limits {
	return config.Limits{
		MaxFrame: 4 << 10, MaxConns: maxConns,
		ReadTimeout:      config.Duration(time.Second),
		WriteTimeout:     config.Duration(time.Second),
		HandshakeTimeout: config.Duration(time.Second),
		IdleTimeout:      config.Duration(time.Second),
		ShutdownTimeout:  config.Duration(500 * time.Millisecond),
	}
}

// TestServerHoldsMaxConnsAndClosesEveryConnection fills a server past
// max_conns with connections that stay idle, some that hang up at once and
// one whose handler never reads: the server holds max_conns, refuses the rest
// busy, counts them, and on shutdown closes every one and returns — with no
// goroutine left behind (TestMain checks with goleak).
func TestServerHoldsMaxConnsAndClosesEveryConnection(t *testing.T) {
	const maxConns, extra = 8, 5
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{}, maxConns)
	core, logs := observer.New(zapcore.InfoLevel)
	srv := &server{log: zap.New(core), limits: testLimits(maxConns)}
	srv.handle = func(ctx context.Context, c net.Conn, track *tracked) {
		entered <- struct{}{}
		// An idle handler: waits for a request that never comes, as the CA's
		// does, until shutdown wakes it.
		if track.idle(true) {
			return
		}
		wc := wire.NewConn(c, wire.Options{ReadTimeout: time.Hour})
		wc.ReadMessage() //nolint:errcheck // woken by shutdown
		track.idle(false)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx, ln) }()

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range maxConns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		<-entered
	}
	if got := srv.stats.open.Load(); got != maxConns {
		t.Errorf("open connections: got %d want %d", got, maxConns)
	}
	// Over the limit: each is told busy and closed.
	for range extra {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := wire.ReadFrame(c, wire.DefaultMaxFrame, nil)
		if err != nil {
			t.Fatalf("over the limit: %v", err)
		}
		m, err := wire.Unmarshal(p)
		if e, ok := m.(*wire.Error); err != nil || !ok || e.Code != wire.CodeBusy {
			t.Errorf("over the limit: got %v, %v; want an Error busy", m, err)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("after busy: got %v, want EOF", err)
		}
		c.Close()
	}
	if got := srv.stats.refused.Load(); got != extra {
		t.Errorf("refused: got %d want %d", got, extra)
	}
	// A burst of refusals is one log line, not one per connection.
	if n := logs.FilterMessageSnippet("refused busy").Len(); n != 1 {
		t.Errorf("%d refusals logged in %d lines, want 1", extra, n)
	}

	cancel()
	waitStopped(t, done, "serve did not return within 5s of shutdown")
	for i, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("connection %d after shutdown: %v, want EOF", i, err)
		}
	}
	if got := srv.stats.open.Load(); got != 0 {
		t.Errorf("open connections after shutdown: got %d want 0", got)
	}
	if got := srv.stats.accepted.Load(); got != maxConns {
		t.Errorf("accepted: got %d want %d", got, maxConns)
	}
}

// TestServerShutdownClosesBusyHandlers checks that a handler stuck in a
// write to a peer that does not read is cut off by the shutdown timeout.
func TestServerShutdownClosesBusyHandlers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writing := make(chan struct{})
	var once sync.Once
	srv := &server{log: zap.NewNop(), limits: testLimits(4)}
	srv.handle = func(ctx context.Context, c net.Conn, _ *tracked) {
		buf := make([]byte, 64<<10)
		for {
			once.Do(func() { close(writing) })
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-writing
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return: the busy handler was not cut off")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v with shutdown_timeout 500ms", d)
	}
}

// TestStatsOp checks the stats operator command's figures.
func TestStatsOp(t *testing.T) {
	srv := &server{limits: testLimits(7)}
	srv.stats.accepted.Add(3)
	srv.stats.refused.Add(2)
	srv.stats.open.Add(1)
	res, err := statsOp("board", srv, nil)(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Role != "board" || st.Accepted != 3 || st.Refused != 2 || st.OpenConns != 1 || st.MaxConns != 7 {
		t.Errorf("stats: %+v", st)
	}
	if st.Goroutines < 1 || st.HeapInuse == 0 || st.RSS == 0 || st.FDs < 3 {
		t.Errorf("runtime figures: goroutines %d, heap %d, rss %d, fds %d", st.Goroutines, st.HeapInuse, st.RSS, st.FDs)
	}
}

// TestAdminServerShutdownWakesIdleOperator checks that an operator
// connection that never sends its request does not hold up a shutdown (it
// used to, for the admin socket's 30-second timeout).
func TestAdminServerShutdownWakesIdleOperator(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, adminSocketName))
	if err != nil {
		t.Fatal(err)
	}
	ping := func(context.Context, json.RawMessage) (any, error) { return "pong", nil }
	s := &adminServer{log: zap.NewNop(), ops: map[string]adminOp{"ping": ping}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The server accepts in order, so once a later operator's command is
	// answered, the idle connection has been taken and has its handler.
	var pong string
	if err := callAdmin(ctx, dir, "ping", nil, &pong, nil); err != nil || pong != "pong" {
		t.Fatalf("a second operator: got %q, %v", pong, err)
	}
	cancel()
	waitStopped(t, done, "the admin server did not stop within 5s: an idle operator connection held it")
}

// waitStopped waits up to 5 s for a server's serve to return after its
// context was cancelled, and fails the test with stuck if it does not, or if
// serve returned an error.
func waitStopped(t *testing.T, done <-chan error, stuck string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal(stuck)
	}
}

// TestRetryBusy checks the student's answer to a daemon at max_conns: it
// tries again after a pause until it gets through, and gives up at once on
// any other error, or when its time is up.
func TestRetryBusy(t *testing.T) {
	busy := &wire.Error{Code: wire.CodeBusy, Text: "the server is at its connection limit; try again shortly"}
	n := 0
	err := retryBusy(context.Background(), zap.NewNop(), "alice", "the board", func() error {
		if n++; n < 3 {
			return fmt.Errorf("session: %w", busy)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("busy twice, then through: got %v after %d attempts, want nil after 3", err, n)
	}

	n = 0
	other := &wire.Error{Code: wire.CodeCertRevoked, Text: "revoked"}
	if err := retryBusy(context.Background(), zap.NewNop(), "alice", "the board", func() error { n++; return other }); err != other || n != 1 {
		t.Errorf("another refusal: got %v after %d attempts, want it after 1", err, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := retryBusy(ctx, zap.NewNop(), "alice", "the board", func() error { return busy }); !errors.Is(err, busy) {
		t.Errorf("always busy: got %v, want the busy refusal", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("always busy: gave up after %v, past the deadline", d)
	}
}

// TestCheckDataDirNamesTheDirectory checks the start-up check of a daemon's
// data directory: a directory that cannot be created is refused with a
// sentence naming it and the key that set it.
func TestCheckDataDirNamesTheDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := checkDataDir("board", "board.data_dir", dir+"/data"); err != nil {
		t.Fatalf("a writable directory: %v", err)
	}
	file := dir + "/file"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := checkDataDir("ca", "ca.data_dir", file+"/data")
	if err == nil || !strings.Contains(err.Error(), file+"/data") || !strings.Contains(err.Error(), "ca.data_dir") {
		t.Errorf("got %v, want an error naming %s and ca.data_dir", err, file+"/data")
	}
}

// TestMinRateCutsATrickle is the regression test of a finding of the hostile
// battery: a client that sends one small frame just before each read
// deadline held its connection for as long as it liked. Now a client that
// sends less than MinRate over a window of waiting is cut off with a timeout
// error, while one that sends quickly is not.
func TestMinRateCutsATrickle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const window = 300 * time.Millisecond
	serve := func() (error, time.Duration) {
		c, err := ln.Accept()
		if err != nil {
			return err, 0
		}
		defer c.Close()
		rc := withMinRate(c, window)
		start := time.Now()
		_, err = io.Copy(io.Discard, rc)
		return err, time.Since(start)
	}

	// One byte every 50 ms: 20 B/s.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		defer c.Close()
		for range 100 {
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	err, took := serve()
	<-trickled // its next write fails: the server closed
	if !errors.Is(err, os.ErrDeadlineExceeded) || wire.CodeOf(err) != wire.CodeTimeout {
		t.Errorf("a trickle: got %v, want a too-slow error with code timeout", err)
	}
	if took > 3*window {
		t.Errorf("a trickle was cut off after %v, window %v", took, window)
	}

	// 1 MiB as fast as it goes, then a clean close.
	c, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		defer c.Close()
		c.Write(make([]byte, 1<<20)) //nolint:errcheck // the reader reports
	}()
	if err, _ := serve(); err != nil {
		t.Errorf("a fast client: %v", err)
	}
	<-sent
}
