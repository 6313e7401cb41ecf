package session

import (
	"container/heap"
	"sync"
	"time"
)

// DefaultReplayCacheSize is the number of hellos a ReplayCache made with size
// 0 remembers: at about 100 bytes each, some 13 MB at most.
const DefaultReplayCacheSize = 1 << 17

// ReplayCache remembers the ClientHellos whose senders proved they hold their
// certificate's key, by the SHA-256 of the hello's frame, until the hello's
// time has left the board's window (PROTOCOL.md §5.1, STEP 3): a hello sent
// again within the window is refused stale-hello; one sent after it fails the
// time check. Its memory is bounded: when it is full, it forgets the hello
// with the earliest time and from then on refuses every hello whose time is
// not later than that one's (a horizon), so that forgetting never lets a
// replay through — a fresh hello, timed now, is later than any it forgot
// unless the cache filled up with hellos from the future. It is safe for
// concurrent use.
type ReplayCache struct {
	mu      sync.Mutex
	max     int
	seen    map[[32]byte]struct{}
	order   helloHeap // the same hellos, earliest time first
	horizon uint64    // hellos with time ≤ horizon are refused (ms); 0 for none
}

// NewReplayCache returns an empty cache for at most size hellos
// (DefaultReplayCacheSize if size ≤ 0).
func NewReplayCache(size int) *ReplayCache {
	if size <= 0 {
		size = DefaultReplayCacheSize
	}
	return &ReplayCache{max: size, seen: make(map[[32]byte]struct{})}
}

// replayVerdict is what the cache says of a hello.
type replayVerdict int

const (
	helloFresh     replayVerdict = iota
	helloReplayed                // the cache holds it: it was accepted before
	helloForgotten               // its time is not later than the horizon
)

// check reports, without changing the cache, whether a hello of time t (ms)
// and hash h would be refused.
func (c *ReplayCache) check(h [32]byte, t uint64) replayVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verdict(h, t)
}

func (c *ReplayCache) verdict(h [32]byte, t uint64) replayVerdict {
	if _, ok := c.seen[h]; ok {
		return helloReplayed
	}
	if t <= c.horizon {
		return helloForgotten
	}
	return helloFresh
}

// insert records a hello of time t and hash h if the cache would accept it,
// and reports the verdict: helloFresh means it was recorded now, and only
// one of several concurrent calls for the same hello gets it. expire is the
// board's clock minus its window, in ms: hellos of an earlier time are
// dropped first (their time check fails already).
func (c *ReplayCache) insert(h [32]byte, t, expire uint64) replayVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 && c.order[0].time < expire {
		delete(c.seen, heap.Pop(&c.order).(helloEntry).hash)
	}
	if v := c.verdict(h, t); v != helloFresh {
		return v
	}
	for len(c.order) >= c.max {
		e := heap.Pop(&c.order).(helloEntry)
		delete(c.seen, e.hash)
		c.horizon = max(c.horizon, e.time)
	}
	if t <= c.horizon { // the hello itself would be the earliest: forgotten at once
		return helloForgotten
	}
	c.seen[h] = struct{}{}
	heap.Push(&c.order, helloEntry{hash: h, time: t})
	return helloFresh
}

// Len returns the number of hellos the cache holds.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order)
}

// helloEntry is a remembered hello: its hash and its time (ms).
type helloEntry struct {
	hash [32]byte
	time uint64
}

// helloHeap is a min-heap of hellos by time (container/heap).
type helloHeap []helloEntry

func (h helloHeap) Len() int           { return len(h) }
func (h helloHeap) Less(i, j int) bool { return h[i].time < h[j].time }
func (h helloHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *helloHeap) Push(x any)        { *h = append(*h, x.(helloEntry)) }
func (h *helloHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// msOf returns t in milliseconds since the Unix epoch, 0 before it.
func msOf(t time.Time) uint64 {
	if ms := t.UnixMilli(); ms > 0 {
		return uint64(ms)
	}
	return 0
}
