package board

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pkiboard/wire"
)

// interrupted leaves in dir the partial file and checkpoint of an upload of
// f interrupted after held bytes, last written at mtime (if not zero).
func interrupted(t *testing.T, dir string, f testFile, held int64, mtime time.Time) {
	t.Helper()
	part, ckpt := partialPaths(dir, f)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(part, f.data[:held], fileMode); err != nil {
		t.Fatal(err)
	}
	if err := writeCheckpoint(ckpt, f.size(), held); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		for _, p := range []string{part, ckpt} {
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestPartialQuota is finding 8's quota: a SID's interrupted uploads may hold
// at most the quota together, the new upload counted at its full size and one
// being received at the size it announced; a resumed upload does not count
// twice. Without the quota, a student could fill the board's disk with
// uploads she never finishes.
func TestPartialQuota(t *testing.T) {
	const quota = 500_000
	f1, f2 := newTestFile("one.bin", 300_000), newTestFile("two.bin", 300_000)
	setup := func(t *testing.T) (string, *partials) {
		dir := t.TempDir()
		interrupted(t, dir, f1, 150_000, time.Time{})
		interrupted(t, dir, f2, 150_000, time.Time{})
		return dir, &partials{dir: dir, quota: quota}
	}

	t.Run("a new upload over the quota", func(t *testing.T) {
		dir, p := setup(t)
		f3 := newTestFile("three.bin", 250_000)
		sendErr, recvErr := run(t, f3.send(wire.SendOptions{}, nil), receiveInto(p, dir, 1<<20, nil))
		checkPeerCode(t, sendErr, wire.CodeFileTooLarge)
		var r *wire.Refusal
		if !errors.As(recvErr, &r) || r.Code != wire.CodeFileTooLarge {
			t.Fatalf("receive: got %v, want file-too-large", recvErr)
		}
		for _, want := range []string{`"one.bin"`, `"two.bin"`, "300000 bytes of the 500000", `"three.bin" (250000 bytes)`, "sending the same file again"} {
			if !strings.Contains(r.Text, want) {
				t.Errorf("the refusal %q does not say %s", r.Text, want)
			}
		}
		if part, _ := partialPaths(dir, f3); fileExists(part) {
			t.Error("the refused upload left a partial file")
		}
	})
	t.Run("a new upload within it", func(t *testing.T) {
		dir, p := setup(t)
		f4 := newTestFile("four.bin", 150_000)
		if sendErr, recvErr := run(t, f4.send(wire.SendOptions{}, nil), receiveInto(p, dir, 1<<20, nil)); sendErr != nil || recvErr != nil {
			t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
		}
	})
	t.Run("resuming counts once", func(t *testing.T) {
		dir, p := setup(t)
		var resumed int64
		if sendErr, recvErr := run(t, f1.send(wire.SendOptions{}, &resumed), receiveInto(p, dir, 1<<20, nil)); sendErr != nil || recvErr != nil || resumed != 150_000 {
			t.Fatalf("resumed from %d; send: %v; receive: %v", resumed, sendErr, recvErr)
		}
	})
	t.Run("an upload being received counts as announced", func(t *testing.T) {
		dir, p := setup(t)
		part, _ := partialPaths(dir, f2)
		inProgress.Lock()
		inProgress.paths[absPath(part)] = f2.size()
		inProgress.Unlock()
		defer func() {
			inProgress.Lock()
			delete(inProgress.paths, absPath(part))
			inProgress.Unlock()
		}()
		f4 := newTestFile("four.bin", 150_000) // 150 000 + 300 000 + 150 000 > 500 000
		sendErr, _ := run(t, f4.send(wire.SendOptions{}, nil), receiveInto(p, dir, 1<<20, nil))
		checkPeerCode(t, sendErr, wire.CodeFileTooLarge)
	})
	t.Run("no quota", func(t *testing.T) {
		dir, _ := setup(t)
		f3 := newTestFile("three.bin", 250_000)
		if sendErr, recvErr := run(t, f3.send(wire.SendOptions{}, nil), receiveInto(&partials{dir: dir}, dir, 1<<20, nil)); sendErr != nil || recvErr != nil {
			t.Fatalf("send: %v; receive: %v", sendErr, recvErr)
		}
	})
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestExpirePartials is finding 8's expiry: interrupted uploads last written
// more than the TTL ago are removed with their checkpoints and temporary
// files, and their emptied SID directories; recent ones and one being
// received stay; PartialUsage counts what is held.
func TestExpirePartials(t *testing.T) {
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	st.now = func() time.Time { return now }
	const ttl = 72 * time.Hour
	old, recent := now.Add(-ttl-time.Minute), now.Add(-ttl+time.Minute)

	alice, bob, carol := st.partials("alice").dir, st.partials("bob").dir, st.partials("carol").dir
	a1, a2 := newTestFile("a1.bin", 100_000), newTestFile("a2.bin", 100_000)
	interrupted(t, alice, a1, 40_000, old)
	interrupted(t, alice, a2, 30_000, recent)
	b1 := newTestFile("b1.bin", 100_000)
	interrupted(t, bob, b1, 20_000, old)
	tmp := filepath.Join(bob, ".."+strings.Repeat("0", 64)+".b1.bin.ckpt.123.tmp") // left by a crash
	if err := os.WriteFile(tmp, []byte("x"), fileMode); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(tmp, old, old)
	c1 := newTestFile("c1.bin", 100_000)
	interrupted(t, carol, c1, 10_000, old)
	part, _ := partialPaths(carol, c1)
	inProgress.Lock()
	inProgress.paths[absPath(part)] = c1.size() // being received: stays
	inProgress.Unlock()
	defer func() {
		inProgress.Lock()
		delete(inProgress.paths, absPath(part))
		inProgress.Unlock()
	}()

	if u, err := st.PartialUsage(); err != nil || u != (PartialUsage{Uploads: 4, Bytes: 100_000}) {
		t.Fatalf("before: usage %+v, %v; want 4 uploads of 100000 bytes", u, err)
	}
	gone, err := st.ExpirePartials(ttl)
	if err != nil {
		t.Fatal(err)
	}
	if gone != (PartialUsage{Uploads: 2, Bytes: 60_000}) {
		t.Errorf("expired %+v, want 2 uploads of 60000 bytes (a1, b1)", gone)
	}
	a2part, a2ckpt := partialPaths(alice, a2)
	if got := dirNames(t, alice); !slices.Equal(got, []string{filepath.Base(a2ckpt), filepath.Base(a2part)}) {
		t.Errorf("alice's directory holds %q, want only a2's files", got)
	}
	if fileExists(bob) {
		t.Errorf("bob's directory is still there: %q", dirNames(t, bob))
	}
	if got := len(dirNames(t, carol)); got != 2 {
		t.Errorf("carol's upload being received: %d files left, want 2", got)
	}
	if u, err := st.PartialUsage(); err != nil || u != (PartialUsage{Uploads: 2, Bytes: 40_000}) {
		t.Errorf("after: usage %+v, %v; want 2 uploads of 40000 bytes", u, err)
	}
}
