package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"pkiboard/wire"
)

// headerFlood opens n connections to addr, each sending a frame header that
// announces announce bytes and one byte of payload, and returns them (the
// caller closes them).
func headerFlood(t *testing.T, addr string, n int, announce uint32) (held []net.Conn) {
	t.Helper()
	data := append(binary.BigEndian.AppendUint32(nil, announce), 0x20)
	conns := make([]net.Conn, n)
	errs := forEach(n, 64, func(i int) error {
		c, err := dialHostile(addr, 0)
		if err != nil {
			return err
		}
		conns[i] = c
		_, err = c.Write(data)
		return err
	})
	for _, err := range errs {
		t.Errorf("header flood: %v", err)
	}
	for _, c := range conns {
		if c != nil {
			held = append(held, c)
		}
	}
	return held
}

// TestHeaderAloneCostsLittle is finding 6's allocation, measured on a real
// board: 1,000 connections each send a frame header announcing the most the
// board takes and one byte, and stay open. The board's heap in use must not
// grow by the announced lengths: a frame's buffer grows as its bytes arrive,
// and a connection's first frame is bounded by the largest legal first
// message (PROTOCOL.md §1). The figures go to the log (go test -v).
func TestHeaderAloneCostsLittle(t *testing.T) {
	const n = 1000
	// Long timeouts, so that the connections are still held when sampled;
	// the limits of unproven connections lifted, so that the board takes
	// all 1,000 from this one source (TestStrangersCostLittle tests those).
	limits := "read_timeout = \"60s\"\nhandshake_timeout = \"60s\"\nidle_timeout = \"60s\"\nmax_unproven = 1024\nsource_burst = 0"
	in := newInstall(t, map[string]string{"ca": limits, "board": limits})
	s := &system{install: in}
	s.ca = in.start("ca", "--log-level", "info")
	s.board = in.start("board", "--ca-addr", s.ca.Addr, "--log-level", "info")
	dir := s.path("data", "board")

	for _, announce := range []uint32{128 << 10, 13461} {
		t.Run(fmt.Sprint(announce), func(t *testing.T) {
			base, err := adminStats(dir)
			if err != nil {
				t.Fatal(err)
			}
			held := headerFlood(t, s.board.Addr, n, announce)
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			// Let the board take every connection and read each header (or
			// refuse it), then sample.
			var st daemonStats
			deadline := time.Now().Add(20 * time.Second)
			for {
				if st, err = adminStats(dir); err != nil {
					t.Fatal(err)
				}
				if st.Accepted >= base.Accepted+n || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(time.Second) // the last handlers reach their read
			if st, err = adminStats(dir); err != nil {
				t.Fatal(err)
			}
			grew := int64(st.HeapInuse) - int64(base.HeapInuse)
			t.Logf("%d connections, each a header announcing %d bytes and 1 byte: %d held open, heap in use %.1f MiB -> %.1f MiB (%+.1f KiB a connection)",
				n, announce, st.OpenConns, float64(base.HeapInuse)/(1<<20), float64(st.HeapInuse)/(1<<20), float64(grew)/n/1024)
			if announce <= wire.MaxFirstFrameBoard && st.OpenConns < n-16 {
				t.Errorf("the board held %d of %d connections whose headers announce a legal first frame: the measure is of nothing", st.OpenConns, n)
			}
			if perConn := grew / n; perConn > 16<<10 {
				t.Errorf("the board's heap grew by %d bytes a connection, want at most 16 KiB: a header made it allocate what it announced", perConn)
			}
		})
	}
}

// TestFirstFrameLimits checks that each daemon reads a connection's first
// frame with the limit of the largest legal first message (PROTOCOL.md §1),
// below its max_frame: one byte more is refused frame-too-large before
// anything is read, and a frame of exactly the limit is read (and refused for
// what it holds, not for its size).
func TestFirstFrameLimits(t *testing.T) {
	in := newInstall(t, nil)
	s := &system{install: in}
	s.ca = in.start("ca", "--log-level", "info")
	s.board = in.start("board", "--ca-addr", s.ca.Addr, "--log-level", "info")
	for _, tt := range []struct {
		daemon string
		addr   string
		limit  int
	}{
		{"CA", s.ca.Addr, wire.MaxFirstFrameCA},
		{"board", s.board.Addr, wire.MaxFirstFrameBoard},
	} {
		t.Run(tt.daemon, func(t *testing.T) {
			// One byte over: refused on the header alone.
			codes, _, err := oneShot(tt.addr, binary.BigEndian.AppendUint32(nil, uint32(tt.limit+1)), false, 10*time.Second)
			if err != nil || !slices.Equal(codes, []wire.Code{wire.CodeFrameTooLarge}) {
				t.Errorf("a first frame of %d bytes: got %v, %v; want frame-too-large", tt.limit+1, codes, err)
			}
			// Exactly the limit: read, and refused as a message.
			frame := rawFrame(append([]byte{0x7f}, make([]byte, tt.limit-1)...))
			codes, _, err = oneShot(tt.addr, frame, true, 10*time.Second)
			if err != nil || len(codes) != 1 || codes[0] == wire.CodeFrameTooLarge {
				t.Errorf("a first frame of %d bytes: got %v, %v; want one refusal, not frame-too-large", tt.limit, codes, err)
			}
		})
	}
}
