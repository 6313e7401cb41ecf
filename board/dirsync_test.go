package board

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirSyncerShares holds the first fsync until 31 more callers are queued,
// and checks that they share one more fsync, begun after their calls.
func TestDirSyncerShares(t *testing.T) {
	var calls atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	d := newDirSyncer("dir", func(string) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return nil
	})
	defer d.close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.syncNow() }()
	<-entered
	const waiters = 31
	for range waiters {
		wg.Add(1)
		go func() { defer wg.Done(); d.syncNow() }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(d.reqs) < waiters && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got, want := calls.Load(), int64(2); got != want {
		t.Errorf("fsyncs for 1+%d callers: got %d want %d", waiters, got, want)
	}
}

func TestDirSyncerReportsFailure(t *testing.T) {
	boom := errors.New("EIO")
	fail := atomic.Bool{}
	fail.Store(true)
	d := newDirSyncer("dir", func(string) error {
		if fail.Load() {
			return boom
		}
		return nil
	})
	if err := d.syncNow(); !errors.Is(err, boom) {
		t.Errorf("got %v want %v", err, boom)
	}
	fail.Store(false)
	if err := d.syncNow(); err != nil {
		t.Errorf("after the fault: got %v want nil", err)
	}
	d.close()
	if err := d.syncNow(); !errors.Is(err, errSyncerClosed) {
		t.Errorf("after close: got %v want %v", err, errSyncerClosed)
	}
}
