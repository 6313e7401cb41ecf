package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/config"
	"pkiboard/wire"
)

// server is the accept loop the CA and the board share: it bounds concurrent
// connections, holds each to MinRate, hands each to handle in its own
// goroutine, and on shutdown stops
// accepting, wakes idle connections, and gives busy ones a bounded time to
// finish before closing them.
type server struct {
	log    *zap.Logger
	limits config.Limits
	// handle serves one connection. It returns when the peer is done, on error,
	// or soon after ctx is cancelled (at the latest when the connection is
	// closed under it). It must call track.idle around waits for a new request.
	handle func(ctx context.Context, c net.Conn, track *tracked)

	stats connStats // for `pkiboard stats`
}

// tracked is one live connection as the server sees it.
type tracked struct {
	c    net.Conn
	mu   sync.Mutex
	wait bool // waiting for the peer's next request
	stop bool // the server is shutting down
}

// idle marks the connection as waiting for a new request (true) or serving one
// (false). While idle during shutdown, its read is interrupted at once. It
// reports whether the server is shutting down, so a handler can stop.
func (t *tracked) idle(waiting bool) (stopping bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.wait = waiting
	if waiting && t.stop {
		t.c.SetReadDeadline(time.Now()) //nolint:errcheck // closing anyway
	}
	return t.stop
}

// shutdown wakes the connection if it is idle and marks it stopping.
func (t *tracked) shutdown() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stop = true
	if t.wait {
		t.c.SetReadDeadline(time.Now()) //nolint:errcheck // closing anyway
	}
}

// busyWriteTimeout bounds the courtesy "busy" answer to a connection refused
// for being over the limit.
const busyWriteTimeout = 200 * time.Millisecond

// serve accepts on ln until ctx is cancelled, then shuts down as described on
// server. It returns nil after a clean shutdown.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[*tracked]struct{}{}
		slots = make(chan struct{}, s.limits.MaxConns)
	)
	stopAccept := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopAccept()

	var (
		acceptErr    error
		backoff      = 5 * time.Millisecond
		busyLogged   time.Time // when refusals were last logged
		busyUnlogged int       // refusals since
	)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				acceptErr = err
				break
			}
			// Out of descriptors or a similar passing condition: wait and retry
			// rather than spin.
			s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case slots <- struct{}{}:
		default:
			s.stats.refused.Add(1)
			refuseBusy(c)
			// A flood must not become a flood of log lines: at most one a
			// second, with the count since the last.
			busyUnlogged++
			if now := time.Now(); now.Sub(busyLogged) >= time.Second {
				s.log.Warn("connections refused busy: at max_conns", zap.Stringer("peer", c.RemoteAddr()),
					zap.Int("max_conns", s.limits.MaxConns), zap.Int("refused", busyUnlogged), zap.Duration("in", min(now.Sub(busyLogged), time.Hour)))
				busyLogged, busyUnlogged = now, 0
			}
			continue
		}
		s.stats.accepted.Add(1)
		s.stats.open.Add(1)
		c = withMinRate(c, s.limits.IdleTimeout.D())
		t := &tracked{c: c}
		mu.Lock()
		conns[t] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				c.Close()
				mu.Lock()
				delete(conns, t)
				mu.Unlock()
				s.stats.open.Add(-1)
				<-slots
			}()
			s.handle(ctx, c, t)
		}()
	}

	// Shutdown: wake idle connections, give busy ones ShutdownTimeout, then close
	// whatever is left and wait for the handlers to notice.
	mu.Lock()
	for t := range conns {
		t.shutdown()
	}
	mu.Unlock()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.limits.ShutdownTimeout.D()):
		mu.Lock()
		s.log.Warn("shutdown timeout: closing sessions still in flight", zap.Int("connections", len(conns)))
		for t := range conns {
			t.c.Close()
		}
		mu.Unlock()
		<-done
	}
	return acceptErr
}

// refuseBusy tells a connection over the limit to come back later, without
// waiting on it, and closes it.
func refuseBusy(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(busyWriteTimeout)) //nolint:errcheck // best effort
	if msg, err := wire.Marshal(&wire.Error{Code: wire.CodeBusy, Text: "the server is at its connection limit; try again shortly"}); err == nil {
		wire.WriteFrame(c, msg) //nolint:errcheck // best effort
	}
	c.Close()
}

// daemon is what the CA and the board share around their own work: a TCP
// listener for their clients, the operator socket in their data directory, and
// background loops that end with them.
type daemon struct {
	name    string // "CA" or "board", as the logs say it
	role    string // "ca" or "board", as the stats command says it
	listen  string
	dataDir string
	limits  config.Limits
	handle  func(ctx context.Context, c net.Conn, t *tracked)
	ops     map[string]adminOp
	fields  []zap.Field                 // logged with "… listening"
	loops   []func(ctx context.Context) // each runs until ctx ends
	stats   func(*Stats)                // when set, adds the role's own figures to `stats`
}

// runDaemon listens, serves clients, operators and the loops until ctx is
// cancelled, then stops them all and returns the first error.
func runDaemon(ctx context.Context, log *zap.Logger, d daemon) error {
	ln, err := net.Listen("tcp", d.listen)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", d.role, d.listen, err)
	}
	admin, err := listenAdmin(d.dataDir)
	if err != nil {
		ln.Close()
		return err
	}
	log.Info(d.name+" listening", append([]zap.Field{
		zap.String("addr", ln.Addr().String()),
		zap.String("admin_socket", admin.Addr().String()),
	}, d.fields...)...)

	srv := &server{log: log, limits: d.limits, handle: d.handle}
	d.ops["stats"] = statsOp(d.role, srv, d.stats)
	ops := &adminServer{log: log, ops: d.ops}
	errc := make(chan error, 1+len(d.loops))
	go func() { errc <- ops.serve(ctx, admin) }()
	for _, loop := range d.loops {
		go func() { loop(ctx); errc <- nil }()
	}
	err = srv.serve(ctx, ln)
	for range 1 + len(d.loops) {
		if e := <-errc; err == nil {
			err = e
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", d.role, err)
	}
	log.Info(d.name + " stopped")
	return nil
}

// wireOptions returns the framing options of a daemon's connections.
func wireOptions(l config.Limits) wire.Options {
	return wire.Options{
		MaxFrame:     l.MaxFrame,
		ReadTimeout:  l.ReadTimeout.D(),
		WriteTimeout: l.WriteTimeout.D(),
	}
}
