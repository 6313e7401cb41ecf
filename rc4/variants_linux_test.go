package rc4

import (
	stdrc4 "crypto/rc4"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// threadCPU returns the CPU time the calling OS thread has used
// (CLOCK_THREAD_CPUTIME_ID), which a busy shared machine does not inflate
// the way it inflates wall time.
func threadCPU(t *testing.T) time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		t.Fatalf("clock_gettime: %v", errno)
	}
	return time.Duration(ts.Nano())
}

// TestVariantsCPU prints, for every variant and crypto/rc4, the median
// throughput per CPU second and the median ratio to the kept loop over
// rounds in which the variants take turns, in a shuffled order, on 16 KiB
// buffers: the size of `openssl speed -bytes 16384`, whose figure is per
// CPU second too unless it is given -elapsed. It measures and asserts
// nothing unless RC4_VARIANTS_CPU=1; RC4_ROUNDS sets the number of rounds
// (default 100):
//
//	RC4_VARIANTS_CPU=1 go test -run VariantsCPU -v ./rc4
func TestVariantsCPU(t *testing.T) {
	if os.Getenv("RC4_VARIANTS_CPU") != "1" {
		t.Skip("set RC4_VARIANTS_CPU=1 to measure")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	type entry struct {
		name       string
		c          keystreamer
		mbs, ratio []float64
	}
	var all []*entry
	for _, v := range variants {
		c, err := v.new(benchKey)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, &entry{name: v.name, c: c})
	}
	std, err := stdrc4.NewCipher(benchKey)
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, &entry{name: "crypto/rc4", c: std})

	buf := make([]byte, 16<<10)
	rounds, _ := strconv.Atoi(os.Getenv("RC4_ROUNDS"))
	if rounds == 0 {
		rounds = 100
	}
	const perTurn = 100 // 100 x 16 KiB is a few ms per turn
	order := make([]int, len(all))
	for n := range order {
		order[n] = n
	}
	r := newRand(t)
	got := make([]float64, len(all))
	for range rounds {
		r.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, n := range order {
			start := threadCPU(t)
			for range perTurn {
				all[n].c.XORKeyStream(buf, buf)
			}
			got[n] = float64(perTurn*len(buf)) / (threadCPU(t) - start).Seconds() / 1e6
		}
		for n, e := range all {
			e.mbs = append(e.mbs, got[n])
			e.ratio = append(e.ratio, got[n]/got[0])
		}
	}
	for _, e := range all {
		slices.Sort(e.mbs)
		slices.Sort(e.ratio)
		t.Logf("%-12s %5.0f MB/s per CPU second (quartiles %4.0f–%4.0f), %.2f× %s (quartiles %.2f–%.2f)",
			e.name, e.mbs[len(e.mbs)/2], e.mbs[len(e.mbs)/4], e.mbs[3*len(e.mbs)/4],
			e.ratio[len(e.mbs)/2], all[0].name, e.ratio[len(e.mbs)/4], e.ratio[3*len(e.mbs)/4])
	}
}
