package roles

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"pkiboard/internal/config"
	"pkiboard/wire"
)

// What a peer that has proven nothing may cost a daemon (PROTOCOL.md §6.2).
//
// A connection is unproven from its accept until its peer proves possession
// of a key (the board: its session's handshake completes; the CA: a
// certificate is issued to it). The limiter bounds two things at accept
// time, before anything is read from the connection:
//
//   - the unproven connections in flight, max_unproven of them: the rest of
//     max_conns stays for peers that have proven themselves (uploads that take
//     minutes), and when more than half of max_unproven is taken, a source
//     may hold only a small share (crowdedShare) of it, so that a few
//     addresses cannot take all of it;
//   - each source's failures — requests refused, malformed or too slow, from
//     a peer that had proven nothing — with a token bucket per source: a
//     source (an IPv4 address, an IPv6 /64, which one host or site gets
//     whole) may fail source_burst times at once and is forgiven source_rate
//     failures a second. Each of its unproven connections in flight reserves a
//     token, so a source holds at most source_burst of them; a failure spends
//     the token, and a connection that proves itself or ends without failing
//     gives it back. A source without a token is answered busy.
//
// A proven session never spends a token and is never refused for another's
// failures once accepted; peers behind one NAT share their source's budget
// only for what fails.
type limiter struct {
	burst       float64 // 0: no per-source limit
	rate        float64 // tokens a second
	maxUnproven int
	maxSources  int // the table's bound, maxSources but in tests
	now         func() time.Time

	mu        sync.Mutex
	unproven  int // connections in flight that have proven nothing
	sources   map[netip.Prefix]*source
	swept     time.Time // when sources was last swept
	overflow  source    // the bucket of new sources while the table is full
	refusedBy [numRefusals]uint64
}

// A refusal is why the limiter refused a connection.
type refusal int

const (
	admitted        refusal = iota
	refusedSource           // its source has no token left
	refusedUnproven         // max_unproven, or the source's share of it, is taken
	refusedMaxConns         // max_conns is taken (the server's own count)
	numRefusals
)

// maxSources bounds the limiter's table of sources. An entry is kept only
// while it holds something (a connection in flight, or fewer tokens than a
// full bucket), so the table fills only under an attack from more than this
// many sources within source_burst/source_rate seconds; new sources then
// share one bucket (limiter.overflow) until a sweep frees entries.
const maxSources = 1 << 16

// sweepEvery is how often the table is swept of entries that hold nothing.
const sweepEvery = 10 * time.Second

// crowdedShare is how many unproven connections a source may hold once more
// than half of max_unproven is taken.
const crowdedShare = 4

// source is one source's bucket.
type source struct {
	tokens  float64   // failures it may still have, refilled up to burst
	at      time.Time // when tokens was last refilled
	pending int       // its unproven connections in flight that hold a token
	conns   int       // its connections in flight (its entry is kept while any are)
}

// newLimiter returns the limiter of a daemon's limits; now is its clock
// (time.Now if nil).
func newLimiter(l config.Limits, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	maxUnproven := l.MaxUnproven
	if maxUnproven <= 0 || maxUnproven > l.MaxConns {
		maxUnproven = l.MaxConns
	}
	return &limiter{
		burst:       float64(l.SourceBurst),
		rate:        l.SourceRate,
		maxUnproven: maxUnproven,
		maxSources:  maxSources,
		now:         now,
		sources:     make(map[netip.Prefix]*source),
	}
}

// sourceOf returns the source a connection from addr is counted under: its
// IPv4 address, or its IPv6 address's /64. Addresses that are not IP (a Unix
// socket in a test) all count as one source.
func sourceOf(addr net.Addr) netip.Prefix {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// admit decides on a new connection from addr: it returns the connection's
// ticket, or why it is refused.
func (l *limiter) admit(addr net.Addr) (*ticket, refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.unproven >= l.maxUnproven {
		l.refusedBy[refusedUnproven]++
		return nil, refusedUnproven
	}
	var src *source
	if l.burst > 0 {
		src = l.sourceFor(sourceOf(addr), now)
		src.refill(now, l.burst, l.rate)
		if src.tokens-float64(src.pending) < 1 {
			l.refusedBy[refusedSource]++
			return nil, refusedSource
		}
		if 2*l.unproven >= l.maxUnproven && src.pending >= crowdedShare {
			l.refusedBy[refusedUnproven]++
			return nil, refusedUnproven
		}
		src.pending++
		src.conns++
	}
	l.unproven++
	return &ticket{l: l, src: src, reserved: src != nil, unproven: true}, admitted
}

// sourceFor returns the bucket of key, creating a full one if it has none.
// The caller holds l.mu.
func (l *limiter) sourceFor(key netip.Prefix, now time.Time) *source {
	if src, ok := l.sources[key]; ok {
		return src
	}
	if now.Sub(l.swept) >= sweepEvery || (len(l.sources) >= l.maxSources && now.Sub(l.swept) >= time.Second) {
		l.sweep(now)
	}
	if len(l.sources) >= l.maxSources {
		if l.overflow.at.IsZero() {
			l.overflow = source{tokens: l.burst, at: now}
		}
		return &l.overflow
	}
	src := &source{tokens: l.burst, at: now}
	l.sources[key] = src
	return src
}

// sweep forgets the sources that hold nothing: no connection in flight and a
// full bucket. The caller holds l.mu.
func (l *limiter) sweep(now time.Time) {
	l.swept = now
	for key, src := range l.sources {
		src.refill(now, l.burst, l.rate)
		if src.conns == 0 && src.tokens >= l.burst {
			delete(l.sources, key)
		}
	}
}

// refill adds the tokens earned since the last refill, up to burst.
func (s *source) refill(now time.Time, burst, rate float64) {
	if d := now.Sub(s.at); d > 0 {
		s.tokens = min(burst, s.tokens+d.Seconds()*rate)
	}
	s.at = now
}

// stats returns the connections in flight that have proven nothing, and the
// refusals of each kind since start.
func (l *limiter) stats() (unproven int, bySource, byUnproven uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unproven, l.refusedBy[refusedSource], l.refusedBy[refusedUnproven]
}

// A ticket is one admitted connection's account with the limiter. Its
// methods are safe for concurrent use.
type ticket struct {
	l        *limiter
	src      *source // nil without a per-source limit
	reserved bool    // holds a token of src
	unproven bool    // counts in limiter.unproven
	proven   bool
}

// isProven reports whether prove was called.
func (t *ticket) isProven() bool {
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	return t.proven
}

// prove records that the peer proved possession of a key: the connection no
// longer counts as unproven, its token goes back, and no later failure on it
// counts.
func (t *ticket) prove() {
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	t.proven = true
	t.release()
}

// fail records a failure of a peer that may have proven nothing: unless it
// has, its source spends a token (the one the connection reserved, or
// another). It reports whether the source is out of tokens, so that a
// connection that could go on failing (the CA's, which stays open after a
// refusal) is closed.
func (t *ticket) fail() (exhausted bool) {
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	if t.proven || t.src == nil {
		return false
	}
	if t.reserved {
		t.reserved = false
		t.src.pending--
	}
	t.src.refill(t.l.now(), t.l.burst, t.l.rate)
	t.src.tokens = max(0, t.src.tokens-1)
	return t.src.tokens-float64(t.src.pending) < 1
}

// close ends the connection's account: whatever it still holds is given back.
func (t *ticket) close() {
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	t.release()
	if t.src != nil {
		t.src.conns--
		t.src = nil
	}
}

// release gives back the token and the unproven slot the ticket holds. The
// caller holds t.l.mu.
func (t *ticket) release() {
	if t.reserved {
		t.reserved = false
		t.src.pending--
	}
	if t.unproven {
		t.unproven = false
		t.l.unproven--
	}
}

// peerFailure reports whether a refusal with code counts as a failure of
// the peer: not the daemon's own trouble, nor a connection that closed
// without a refusal (code 0).
func peerFailure(code wire.Code) bool { return code != 0 && !ownTrouble(code) }

// ownTrouble reports whether a refusal with code is the daemon's own
// trouble, not its peer's doing: its failure, a limit of its own, its disk,
// a CRL it could not refresh.
func ownTrouble(code wire.Code) bool {
	switch code {
	case wire.CodeInternal, wire.CodeBusy, wire.CodeStorage, wire.CodeCRLUnavailable:
		return true
	}
	return false
}
