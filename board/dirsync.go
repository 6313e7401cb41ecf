package board

import (
	"errors"
	"sync"

	"pkiboard/internal/durable"
)

// dirSyncer makes new names in one directory durable for many writers at
// once (group commit of directory entries, as package store does for its
// transactions): a writer that has created or renamed a file there calls
// syncNow, which returns once an fsync of the directory that began after the
// call has finished; the writers that call while one fsync runs share the
// next.
type dirSyncer struct {
	dir  string
	sync func(dir string) error // durable.SyncDir; tests replace it

	mu      sync.RWMutex // guards closed against sends on reqs
	closed  bool
	reqs    chan chan error
	stopped chan struct{}
}

// errSyncerClosed is returned by syncNow after close.
var errSyncerClosed = errors.New("board: store closed")

func newDirSyncer(dir string, sync func(string) error) *dirSyncer {
	d := &dirSyncer{dir: dir, sync: sync, reqs: make(chan chan error, 256), stopped: make(chan struct{})}
	if d.sync == nil {
		d.sync = durable.SyncDir
	}
	go d.loop()
	return d
}

// syncNow makes every name created in the directory before the call durable.
func (d *dirSyncer) syncNow() error {
	done := make(chan error, 1)
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return errSyncerClosed
	}
	d.reqs <- done
	d.mu.RUnlock()
	return <-done
}

// loop serves the waiting callers with one fsync each round, until reqs is
// closed and drained.
func (d *dirSyncer) loop() {
	defer close(d.stopped)
	var waiting []chan error
	for first := range d.reqs {
		waiting = append(waiting[:0], first)
	drain:
		for {
			select {
			case r, ok := <-d.reqs:
				if !ok {
					break drain
				}
				waiting = append(waiting, r)
			default:
				break drain
			}
		}
		err := d.sync(d.dir)
		for _, w := range waiting {
			w <- err
		}
	}
}

// close stops the syncer once the queued calls are served.
func (d *dirSyncer) close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		close(d.reqs)
	}
	d.mu.Unlock()
	<-d.stopped
}
