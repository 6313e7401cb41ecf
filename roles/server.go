package roles

import (
	"context"
	"encoding/json"
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
	// closed under it). It must call track.idle around waits for a new request,
	// and tell track what the peer showed: track.proven once it has proven
	// possession of a key, track.failed for each refusal.
	handle func(ctx context.Context, c net.Conn, track *tracked)

	// limit is what unproven peers may cost (limit.go); serve makes it from
	// limits if nil.
	limit *limiter
	// now is the clock of the limits and of the refusals' log lines;
	// time.Now if nil.
	now func() time.Time

	stats connStats // for `pkiboard stats`
}

// tracked is one live connection as the server sees it.
type tracked struct {
	c      net.Conn
	ticket *ticket // its account with the server's limiter
	stats  *connStats
	mu     sync.Mutex
	wait   bool // waiting for the peer's next request
	stop   bool // the server is shutting down
}

// proven records that the peer has proven possession of a key: it no longer
// counts as unproven, and its later failures do not count against its
// source.
func (t *tracked) proven() { t.ticket.prove() }

// failed records a refusal with code of the peer's request, handshake or
// frame (a timeout included). Unless the peer has proven itself, or the
// code is the daemon's own trouble (peerFailure), it counts against its
// source and in the stats. It reports whether the connection may go on:
// false once its source is out of tokens, and the handler then ends it.
func (t *tracked) failed(code wire.Code) (goOn bool) {
	if !peerFailure(code) || t.ticket.isProven() {
		return true
	}
	t.stats.anonymousRefusal(code)
	return !t.ticket.fail()
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

	now := s.now
	if now == nil {
		now = time.Now
	}
	if s.limit == nil {
		s.limit = newLimiter(s.limits, now)
	}
	var (
		acceptErr error
		backoff   = 5 * time.Millisecond
		busyLog   [numRefusals]everySecond // by refusal
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
		// Refused at once, before anything is read: over max_conns, or
		// over what unproven peers may take (limit.go).
		why := refusedMaxConns
		var tk *ticket
		select {
		case slots <- struct{}{}:
			if tk, why = s.limit.admit(c.RemoteAddr()); why != admitted {
				<-slots
			}
		default:
		}
		if why != admitted {
			s.stats.refused.Add(1)
			refuseBusy(c, busyText[why])
			// A flood must not become a flood of log lines: at most one a
			// second of each kind, with the count since the last.
			if n, in, ok := busyLog[why].note(now()); ok {
				s.log.Warn(busyLogText[why], zap.Stringer("peer", c.RemoteAddr()),
					zap.Int("max_conns", s.limits.MaxConns), zap.Int("refused", n), zap.Duration("in", in))
			}
			continue
		}
		s.stats.accepted.Add(1)
		s.stats.open.Add(1)
		c = withMinRate(c, s.limits.IdleTimeout.D())
		t := &tracked{c: c, ticket: tk, stats: &s.stats}
		mu.Lock()
		conns[t] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				c.Close()
				tk.close()
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

// busyText is the sentence a connection refused busy is told, by refusal.
var busyText = [numRefusals]string{
	refusedSource:   "too many failed attempts from your address; try again in a few seconds",
	refusedUnproven: "the server has too many connections that have not authenticated yet; try again shortly",
	refusedMaxConns: "the server is at its connection limit; try again shortly",
}

// busyLogText is the operator's line for connections refused busy, by refusal.
var busyLogText = [numRefusals]string{
	refusedSource:   "connections refused busy: their source keeps failing (source_burst, source_rate)",
	refusedUnproven: "connections refused busy: at max_unproven (connections that have proven nothing)",
	refusedMaxConns: "connections refused busy: at max_conns",
}

// refuseBusy tells a connection refused at accept to come back later, with
// text, without waiting on it, and closes it.
func refuseBusy(c net.Conn, text string) {
	c.SetWriteDeadline(time.Now().Add(busyWriteTimeout)) //nolint:errcheck // best effort
	if msg, err := wire.Marshal(&wire.Error{Code: wire.CodeBusy, Text: text}); err == nil {
		wire.WriteFrame(c, msg) //nolint:errcheck // best effort
	}
	c.Close()
}

// everySecond gathers events of one kind into a log line at most once a
// second. Its zero value is ready; it is safe for concurrent use.
type everySecond struct {
	mu     sync.Mutex
	logged time.Time // when the last line was allowed
	n      int       // events since
}

// note counts an event at now. When a second has passed since the last line
// it returns ok, the events the line reports (this one included) and the
// time they came in.
func (e *everySecond) note(now time.Time) (n int, in time.Duration, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if now.Sub(e.logged) < time.Second {
		return 0, 0, false
	}
	n, in = e.n, min(now.Sub(e.logged), time.Hour)
	e.logged, e.n = now, 0
	return n, in, true
}

// daemon is what the CA and the board share around their own work: a TCP
// listener for their clients, the operator socket in their data directory, and
// background loops that end with them.
type daemon struct {
	name   string // "CA" or "board", as the logs say it
	role   string // "ca" or "board", as the stats command says it
	limits config.Limits
	handle func(ctx context.Context, c net.Conn, t *tracked)
	ops    map[string]adminOp
	fields []zap.Field                 // logged with "… listening"
	loops  []func(ctx context.Context) // each runs until ctx ends
	stats  func(*Stats) error          // adds the role's own figures to `stats`, if set
	http   *endpoint                   // the HTTP endpoint; nil without one
	conns  *liveConns                  // told of the server's connections, for the metrics; may be nil
}

// listeners are a daemon's two sockets, bound first thing at start — before
// it creates a root, opens its store, enrolls or fetches anything — so that a
// daemon that cannot have its address or its data directory changes and
// spends nothing (a second board on a taken port used to enroll, spending a
// token, and only then fail to bind).
type listeners struct {
	tcp   net.Listener // the clients'
	admin net.Listener // the operator socket's
}

// listen binds a daemon's address and its operator socket in dataDir (which
// checkDataDir has checked).
func listen(role, addr, dataDir string) (*listeners, error) {
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", role, addr, err)
	}
	admin, err := listenAdmin(dataDir)
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	return &listeners{tcp: tcp, admin: admin}, nil
}

// close closes both sockets, for a start that failed before runDaemon; it
// is harmless after runDaemon, which closes them itself.
func (l *listeners) close() {
	l.tcp.Close()
	l.admin.Close()
}

// runDaemon serves clients on ls.tcp, operators on ls.admin, and runs the
// loops, until ctx is cancelled, then stops them all and returns the first
// error.
func runDaemon(ctx context.Context, log *zap.Logger, ls *listeners, d daemon) error {
	defer ls.close()
	log.Info(d.name+" listening", append([]zap.Field{
		zap.String("addr", ls.tcp.Addr().String()),
		zap.String("admin_socket", ls.admin.Addr().String()),
	}, d.fields...)...)

	srv := &server{log: log, limits: d.limits, handle: d.handle}
	d.ops["stats"] = statsOp(d.role, srv, d.stats)
	if d.http != nil {
		log.Info(d.name+" HTTP endpoint up: /metrics, /healthz, /readyz and the console", zap.String("http_addr", d.http.srv.Addr().String()))
		d.ops["console-link"] = d.http.linkOp
		d.loops = append(d.loops, func(ctx context.Context) {
			if err := d.http.srv.Serve(ctx); err != nil {
				log.Error("the HTTP endpoint stopped", zap.Error(err))
			}
		})
		d.http.serving.Store(true)
	} else {
		d.ops["console-link"] = func(context.Context, json.RawMessage) (any, error) {
			return nil, fmt.Errorf("this %s serves no console: its http_listen is empty", d.name)
		}
	}
	ops := &adminServer{log: log, ops: d.ops}
	errc := make(chan error, 1+len(d.loops))
	go func() { errc <- ops.serve(ctx, ls.admin) }()
	for _, loop := range d.loops {
		go func() { loop(ctx); errc <- nil }()
	}
	if d.conns != nil {
		d.conns.p.Store(&srv.stats)
	}
	err := srv.serve(ctx, ls.tcp)
	if d.http != nil {
		d.http.serving.Store(false)
	}
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

// wireOptions returns the framing options of a daemon's connections, whose
// first frame is at most first bytes (the largest legal first message).
func wireOptions(l config.Limits, first int) wire.Options {
	return wire.Options{
		MaxFrame:      l.MaxFrame,
		MaxFirstFrame: first,
		ReadTimeout:   l.ReadTimeout.D(),
		WriteTimeout:  l.WriteTimeout.D(),
	}
}

// lineBudget lets a burst of lineBurst log lines through, then one a second,
// and counts the lines it holds back: a flood of refusals becomes a line a
// second with the count, while the few refusals an operator looks into are
// each logged. Its zero value is ready; it is safe for concurrent use.
type lineBudget struct {
	mu     sync.Mutex
	tokens float64   // lines that may be logged now, up to lineBurst
	at     time.Time // when tokens was last refilled; zero: never used
	held   int       // lines held back since the last one logged
}

// lineBurst is how many lines a lineBudget lets through at once.
const lineBurst = 10

// take asks to log a line at now. It reports whether to log it, and the
// lines held back before it, for the line to say.
func (b *lineBudget) take(now time.Time) (held int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.at.IsZero() {
		b.tokens = lineBurst
	} else if d := now.Sub(b.at); d > 0 {
		b.tokens = min(lineBurst, b.tokens+d.Seconds())
	}
	b.at = now
	if b.tokens < 1 {
		b.held++
		return 0, false
	}
	b.tokens--
	held, b.held = b.held, 0
	return held, true
}
