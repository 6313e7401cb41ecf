package ca

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Renewal retry pauses of a Renewer: after a failed attempt it waits
// renewRetryMin, doubling up to renewRetryMax, and never sleeps longer than
// renewCheckMax at a time, so that a clock that jumps is noticed.
const (
	renewRetryMin = time.Minute
	renewRetryMax = time.Hour
	renewCheckMax = time.Hour
)

// Renewer keeps a long-running holder's identity current (the board's):
// Run renews the certificate two thirds into its life (RenewAt), with
// ReuseOrEnroll and the same IdentityOptions, and swaps the Identity that
// Current returns. Whoever uses the identity — the board's sessions, its
// watch on the CA — loads Current each time it needs it, and may wait on
// Changed to learn of a renewal (the watch reconnects with the new
// certificate). Its methods are safe for concurrent use.
type Renewer struct {
	o   IdentityOptions
	cur atomic.Pointer[Identity]

	mu      sync.Mutex
	changed chan struct{} // closed, and replaced, when cur changes

	// OnRenewed, when set, is told of each new identity, after Current
	// returns it. Set it before Run.
	OnRenewed func(*Identity)
	// OnError, when set, is told of each failed attempt to renew; Run tries
	// again after a pause. Set it before Run.
	OnError func(error)
	// After waits as time.After does; tests replace it. Set it before Run.
	After func(time.Duration) <-chan time.Time
}

// NewRenewer returns a Renewer of the identity id, which ReuseOrEnroll
// returned for o.
func NewRenewer(o IdentityOptions, id *Identity) *Renewer {
	r := &Renewer{o: o, changed: make(chan struct{}), After: time.After}
	r.cur.Store(id)
	return r
}

// Current returns the identity in force.
func (r *Renewer) Current() *Identity { return r.cur.Load() }

// Changed returns a channel that is closed when Current next changes.
func (r *Renewer) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Renewer) set(id *Identity) {
	r.cur.Store(id)
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	if r.OnRenewed != nil {
		r.OnRenewed(id)
	}
}

func (r *Renewer) now() time.Time {
	if r.o.Now != nil {
		return r.o.Now()
	}
	return time.Now()
}

// Run renews the identity whenever it is due, until ctx is cancelled; it
// returns then. A failed attempt is reported to OnError (or, when the CA
// was not reached, to IdentityOptions.OnRenewFailed) and tried again after
// a pause that doubles from one minute up to an hour.
func (r *Renewer) Run(ctx context.Context) {
	retry := renewRetryMin
	for {
		wait := RenewAt(r.Current().Certificate).Sub(r.now())
		if wait > 0 {
			if !r.sleep(ctx, min(wait, renewCheckMax)) {
				return
			}
			continue
		}
		id, err := ReuseOrEnroll(ctx, r.o)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			if r.OnError != nil {
				r.OnError(err)
			}
		case !id.Reused:
			r.set(id)
			retry = renewRetryMin
			continue
		}
		// Not renewed: try again after a pause.
		if !r.sleep(ctx, retry) {
			return
		}
		retry = min(2*retry, renewRetryMax)
	}
}

// sleep waits d, and reports false if ctx was cancelled first.
func (r *Renewer) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-r.After(d):
		return true
	}
}
