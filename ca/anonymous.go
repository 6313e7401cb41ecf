package ca

import (
	"maps"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/wire"
)

// anonymousLogEvery is the least time between two log lines about refusals
// of peers that proved nothing.
const anonymousLogEvery = time.Second

// anonymous counts the refusals of peers that proved nothing (PROTOCOL.md
// §4.2: steps 0 to 6, and any refusal of a request without authorization).
// They cost the CA no disk: they are counted in memory, by code, and logged
// at most once every anonymousLogEvery, with how many there were since the
// last line.
type anonymous struct {
	mu      sync.Mutex
	total   map[wire.Code]uint64 // since Open
	pending map[wire.Code]uint64 // since the last log line
	n       uint64               // the sum of pending
	logged  time.Time            // when the last line was written
}

// noteAnonymous counts a refusal of a peer that proved nothing, and logs the
// refusals counted since the last line if that was at least a second ago.
func (a *Authority) noteAnonymous(r *wire.Refusal, peer string) {
	now := a.o.Now()
	c := &a.anon
	c.mu.Lock()
	if c.total == nil {
		c.total, c.pending = make(map[wire.Code]uint64), make(map[wire.Code]uint64)
	}
	c.total[r.Code]++
	c.pending[r.Code]++
	c.n++
	if now.Sub(c.logged) < anonymousLogEvery {
		c.mu.Unlock()
		return
	}
	byCode := make(map[string]uint64, len(c.pending))
	for code, n := range c.pending {
		byCode[code.String()] = n
	}
	n, since := c.n, c.logged
	clear(c.pending)
	c.n, c.logged = 0, now
	c.mu.Unlock()

	fields := []zap.Field{zap.Uint64("count", n), zap.Any("by_code", byCode),
		zap.String("last_peer", peer), zap.Stringer("last_code", r.Code), zap.String("last_reason", r.Text)}
	if !since.IsZero() {
		fields = append(fields, zap.Time("since", since))
	}
	a.log.Info("requests refused before the peer proved anything (counted, not stored; at most one line a second)", fields...)
}

// AnonymousRefusals returns how many requests the CA refused since Open
// before the peer proved possession of a token or a certificate, by code:
// the anonymous_refusals of `pkiboard stats` (PROTOCOL.md §7). None of them
// was stored.
func (a *Authority) AnonymousRefusals() map[wire.Code]uint64 {
	a.anon.mu.Lock()
	defer a.anon.mu.Unlock()
	return maps.Clone(a.anon.total)
}

// AnonymousRefusalsByName returns AnonymousRefusals with each code written as
// its name ("token-invalid"), as the stats JSON shows them.
func (a *Authority) AnonymousRefusalsByName() map[string]uint64 {
	counts := a.AnonymousRefusals()
	out := make(map[string]uint64, len(counts))
	for code, n := range counts {
		out[code.String()] = n
	}
	return out
}
