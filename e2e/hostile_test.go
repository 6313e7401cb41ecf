package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pkiboard/internal/testcert"
	"pkiboard/session"
	"pkiboard/wire"
)

// The hostile battery's limits: short, so that what they cut off is cut off
// quickly. max_conns stays at its default, 1024. The battery attacks from the
// legitimate student's own address, 127.0.0.1, and measures what each attack
// holds of the daemons: the per-source limit is off and max_unproven is
// max_conns, so that its attacks reach the daemons (TestStrangersCostLittle
// tests those limits, from sources of their own).
const (
	hostileRead      = 3 * time.Second
	hostileHandshake = 3 * time.Second
	hostileIdle      = 3 * time.Second
	hostileLimits    = "read_timeout = \"3s\"\nwrite_timeout = \"2s\"\nhandshake_timeout = \"3s\"\nidle_timeout = \"3s\"\nshutdown_timeout = \"5s\"\n" +
		"max_unproven = 1024\nsource_burst = 0"
)

// daemonStats is the result of the operator command `stats`, written from
// PROTOCOL.md §6, not taken from package roles: the battery reads the binary's
// documented output as any other client would, so a field renamed, dropped or
// added without the document fails it (decodeStats).
type daemonStats struct {
	Role       string    `json:"role"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"` // RFC 3339
	Goroutines int       `json:"goroutines"`
	HeapInuse  uint64    `json:"heap_inuse"` // bytes in use after a garbage collection
	Sys        uint64    `json:"sys"`        // bytes the Go runtime holds from the system
	RSS        uint64    `json:"rss"`        // resident set, 0 where unknown
	FDs        int       `json:"fds"`        // open descriptors, -1 where unknown
	OpenConns  int64     `json:"open_conns"` // client connections now
	MaxConns   int       `json:"max_conns"`  // and the limit
	Accepted   uint64    `json:"accepted"`   // connections served since start
	Refused    uint64    `json:"refused"`    // connections refused busy at a limit since start
	// Requests refused before the peer proved anything, since start, by code.
	AnonymousRefusals map[string]uint64 `json:"anonymous_refusals"`
	// The board's interrupted uploads, and their size.
	PartialUploads *int   `json:"partial_uploads"`
	PartialBytes   *int64 `json:"partial_bytes"`
	// WatchingBoards is the CA's alone: the boards watching it (PROTOCOL.md §4.4).
	WatchingBoards *int `json:"watching_boards,omitempty"`
}

// clientConns returns the connections open but the boards' watches on the
// CA, which are meant to stay.
func (st daemonStats) clientConns() int64 {
	if st.WatchingBoards == nil {
		return st.OpenConns
	}
	return st.OpenConns - int64(*st.WatchingBoards)
}

// statsFields are the fields PROTOCOL.md §7 lists for `stats` of both
// daemons; boardStatsFields those of the board alone.
var (
	statsFields = []string{"role", "pid", "started", "goroutines", "heap_inuse", "sys", "rss", "fds",
		"open_conns", "max_conns", "accepted", "refused", "anonymous_refusals"}
	boardStatsFields = []string{"partial_uploads", "partial_bytes"}
	caStatsFields    = []string{"watching_boards"}
)

// decodeStats decodes a `stats` result strictly: every field PROTOCOL.md §6
// lists must be there, and no other.
func decodeStats(data []byte) (daemonStats, error) {
	var st daemonStats
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return st, err
	}
	want := statsFields
	switch string(fields["role"]) {
	case `"board"`:
		want = append(slices.Clone(want), boardStatsFields...)
	case `"ca"`:
		want = append(slices.Clone(want), caStatsFields...)
	}
	for _, f := range want {
		if _, ok := fields[f]; !ok {
			return st, fmt.Errorf("stats: no field %q (PROTOCOL.md §7)", f)
		}
	}
	if len(fields) != len(want) {
		return st, fmt.Errorf("stats: %d fields, want the %d of PROTOCOL.md §7", len(fields), len(want))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("stats: %w (PROTOCOL.md §7)", err)
	}
	return st, nil
}

// stats asks a running daemon for its figures with `pkiboard stats`.
func (in *install) stats(role string) daemonStats {
	in.t.Helper()
	r := in.mustRun(nil, "stats", "--role", role, "--json")
	st, err := decodeStats([]byte(r.stdout))
	if err != nil {
		in.t.Fatalf("stats --json: %v\n%s", err, r.stdout)
	}
	return st
}

// adminCall runs an operator command straight through the operator socket
// of the daemon whose data directory is dir, and decodes its result into out:
// quicker than a process, for a sample taken while an attack holds, or for
// many checks in a row.
func adminCall(dir, command string, args, out any) error {
	in, err := json.Marshal(args)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("unix", dir+"/admin.sock", 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	wc := wire.NewConn(c, wire.Options{MaxFrame: wire.MaxAdminFrame, ReadTimeout: 30 * time.Second, WriteTimeout: 10 * time.Second})
	if err := wc.WriteMessage(&wire.AdminRequest{Command: command, Args: in}); err != nil {
		return err
	}
	resp, err := wire.Expect[*wire.AdminResponse](wc.ReadMessage())
	if err != nil {
		return err
	}
	return json.Unmarshal(resp.Result, out)
}

// adminStats is adminCall of "stats".
func adminStats(dir string) (daemonStats, error) {
	var raw json.RawMessage
	if err := adminCall(dir, "stats", struct{}{}, &raw); err != nil {
		return daemonStats{}, err
	}
	return decodeStats(raw)
}

// statsLine formats the figures the battery reports.
func statsLine(st daemonStats) string {
	return fmt.Sprintf("goroutines %d, heap in use %.1f MiB, RSS %.1f MiB, fds %d, open conns %d (accepted %d, refused busy %d)",
		st.Goroutines, float64(st.HeapInuse)/(1<<20), float64(st.RSS)/(1<<20), st.FDs, st.OpenConns, st.Accepted, st.Refused)
}

// legit runs the real student role for one new SID (enroll and submit) and
// returns how long it took. It may be called from any goroutine.
func (s *system) legit(sid string) (time.Duration, error) {
	d, _, err := s.legitOut(sid)
	return d, err
}

// legitOut is legit that also returns the student's output.
func (s *system) legitOut(sid string) (time.Duration, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config", s.config, "--role=student",
		"--ca-addr", s.ca.Addr, "--board-addr", s.board.Addr, "--ids", sid)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return took, out.String(), fmt.Errorf("student %s: %v after %v\n%s", sid, err, took.Round(time.Millisecond), out.String())
	}
	if !strings.Contains(out.String(), sid+" submitted: receipt") {
		return took, out.String(), fmt.Errorf("student %s: no receipt line\n%s", sid, out.String())
	}
	return took, out.String(), nil
}

// frameOf returns a message framed as on the wire.
func frameOf(t testing.TB, m wire.Message) []byte {
	t.Helper()
	p, err := wire.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

// rawFrame frames an arbitrary payload.
func rawFrame(p []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

// dialHostile connects to addr; rcvbuf, if positive, shrinks the socket's
// receive buffer (for a client that stops reading).
func dialHostile(addr string, rcvbuf int) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// awaitClose reads what the daemon sends until it closes the connection, and
// returns the codes of its Error messages and how long it took. It is an
// error if the connection is still open after limit: the daemon hangs.
func awaitClose(c net.Conn, limit time.Duration) ([]wire.Code, time.Duration, error) {
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	var codes []wire.Code
	for {
		p, err := wire.ReadFrame(c, 1<<20, nil)
		if err != nil {
			took := time.Since(start)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return codes, took, fmt.Errorf("still open after %v", limit)
			}
			return codes, took, nil // EOF, truncated or reset: closed
		}
		if m, err := wire.Unmarshal(p); err == nil {
			if e, ok := m.(*wire.Error); ok {
				codes = append(codes, e.Code)
			}
		}
	}
}

// forEach runs fn(0..n-1), at most par at a time, and returns the first few
// errors.
func forEach(n, par int, fn func(i int) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, par)
	)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				mu.Lock()
				if len(errs) < 5 {
					errs = append(errs, fmt.Errorf("#%d: %w", i, err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// target is one daemon under attack.
type target struct {
	role  string
	addr  string
	valid []byte // a well-formed first frame for this daemon
}

// attack is one kind of hostile client: run returns what went wrong (the
// daemon hung, answered wrongly, …) and a figure for the report.
type attack struct {
	name string
	run  func(tg target) (figure string, errs []error)
}

// deepChain makes a certificate chain n certificates deep under a root of
// its own: leaf (CN = sid, clientAuth) first, the root last.
func deepChain(t *testing.T, n int, sid string) [][]byte {
	t.Helper()
	key := ecKey()
	serial := int64(1)
	mk := func(tmpl, parent *x509.Certificate, signer crypto.Signer) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		return testcert.Issue(t, tmpl, parent, key.Public(), signer)
	}
	parent := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "CUHK Course Root CA"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, key)
	chain := [][]byte{parent.Raw}
	for i := range n - 2 {
		parent = mk(&x509.Certificate{Subject: pkix.Name{CommonName: fmt.Sprintf("Intermediate %d", i)}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, parent, key)
		chain = append([][]byte{parent.Raw}, chain...)
	}
	leaf := mk(&x509.Certificate{Subject: pkix.Name{CommonName: sid}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, parent, key)
	return append([][]byte{leaf.Raw}, chain...)
}

// helloWith returns a ClientHello frame for sid with the given certificate,
// a fresh, valid X-Wing key share, the time now and a signature of random
// bytes: a stranger's hello, which proves nothing.
func helloWith(t testing.TB, sid string, cert []byte) []byte {
	t.Helper()
	priv, err := hpke.MLKEM768X25519().GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	h := &wire.ClientHello{Version: wire.ProtocolVersion, SID: sid, Certificate: cert, Time: uint64(time.Now().UnixMilli()),
		Suites: []uint16{session.SuiteAES256CTRHMACSHA256}, KEM: wire.KEMXWing, KEMPublic: priv.PublicKey().Bytes(),
		Signature: make([]byte, 64)}
	rand.Read(h.Random[:])
	rand.Read(h.Signature)
	return frameOf(t, h)
}

// oneShot sends data on a new connection, half-closes it if eof, and waits
// for the daemon to close; it returns the Error codes received.
func oneShot(addr string, data []byte, eof bool, limit time.Duration) ([]wire.Code, time.Duration, error) {
	c, err := dialHostile(addr, 0)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(limit))
	c.Write(data) //nolint:errcheck // the daemon may close first
	if eof {
		c.CloseWrite() //nolint:errcheck // may be reset already
	}
	return awaitClose(c, limit)
}

// wantCode is an error unless codes hold one of want (a reset may lose the
// Error, which allowLost tolerates).
func wantCode(codes []wire.Code, allowLost bool, want ...wire.Code) error {
	if len(codes) == 0 && allowLost {
		return nil
	}
	for _, c := range codes {
		if slices.Contains(want, c) {
			return nil
		}
	}
	return fmt.Errorf("got Error codes %v, want one of %v", codes, want)
}

// hostileAttacks are the content attacks of the battery, run at both daemons
// at once; the idle-connection flood runs afterwards, on its own.
func hostileAttacks(t *testing.T, s *system, id identity) []attack {
	const closeLimit = 15 * time.Second // a daemon that keeps a connection longer hangs
	return []attack{
		{"random bytes (200 connections, 1 B to 8 KiB each)", func(tg target) (string, []error) {
			errs := forEach(200, 32, func(i int) error {
				data := make([]byte, 1+mrand.IntN(8<<10))
				rand.Read(data)
				if i%2 == 0 && len(data) > 4 { // half claim a length the bytes can fill
					binary.BigEndian.PutUint32(data, uint32(mrand.IntN(len(data)-3)))
				}
				_, _, err := oneShot(tg.addr, data, i%3 != 0, closeLimit)
				return err
			})
			return "200 closed", errs
		}},
		{"header claiming 4 GiB", func(tg target) (string, []error) {
			codes, took, err := oneShot(tg.addr, []byte{0xff, 0xff, 0xff, 0xff, 'x'}, false, closeLimit)
			if err == nil {
				err = wantCode(codes, false, wire.CodeFrameTooLarge)
			}
			return fmt.Sprintf("frame-too-large, closed in %v", took.Round(time.Millisecond)), []error{err}
		}},
		{"a valid first frame truncated at every position", func(tg target) (string, []error) {
			var slowest atomic.Int64
			errs := forEach(len(tg.valid), 32, func(i int) error {
				_, took, err := oneShot(tg.addr, tg.valid[:i], true, closeLimit)
				if int64(took) > slowest.Load() {
					slowest.Store(int64(took))
				}
				return err
			})
			return fmt.Sprintf("%d prefixes, each closed (slowest %v)", len(tg.valid), time.Duration(slowest.Load()).Round(time.Millisecond)), errs
		}},
		{"unknown message type", func(tg target) (string, []error) {
			codes, _, err := oneShot(tg.addr, rawFrame([]byte{0x99, 1, 2, 3}), false, closeLimit)
			if err == nil {
				err = wantCode(codes, false, wire.CodeUnknownMessage)
			}
			return fmt.Sprintf("%v", codes), []error{err}
		}},
		{"valid frames in the wrong order", func(tg target) (string, []error) {
			var frames [][]byte
			if tg.role == "ca" {
				frames = [][]byte{
					frameOf(t, &wire.FileAck{}),
					frameOf(t, &wire.Data{Bytes: []byte("data first")}),
					helloWith(t, "alice", id.cert.Raw),
					append(frameOf(t, &wire.Fetch{Version: wire.ProtocolVersion, Name: "crl.pem"}), frameOf(t, &wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: 1, SID: "alice", CSR: []byte{1}})...),
				}
			} else {
				frames = [][]byte{
					frameOf(t, &wire.FileHeader{Name: "x.txt", Size: 1}),
					frameOf(t, &wire.Fetch{Version: wire.ProtocolVersion, Name: "root.pem"}),
					frameOf(t, &wire.SubmitEnd{Signature: []byte("sig")}),
				}
			}
			var errs []error
			for _, f := range frames {
				codes, _, err := oneShot(tg.addr, f, false, closeLimit)
				if err == nil {
					err = wantCode(codes, false, wire.CodeUnexpectedMessage, wire.CodeMalformed)
				}
				errs = append(errs, err)
			}
			figure := fmt.Sprintf("%d orders refused", len(frames))
			if tg.role == "board" {
				// Inside an established session: Data before the FileHeader,
				// and a plaintext frame where a record belongs.
				for _, wrong := range []func(sc *session.Conn, wc *wire.Conn) error{
					func(sc *session.Conn, _ *wire.Conn) error {
						return sc.WriteMessage(&wire.Data{Bytes: []byte("data first")})
					},
					func(_ *session.Conn, wc *wire.Conn) error {
						return wc.WriteMessage(&wire.FileHeader{Name: "x.txt", Size: 1})
					},
				} {
					errs = append(errs, inSession(tg.addr, id, wrong))
				}
				figure += ", and 2 inside a session"
			}
			return figure, errs
		}},
		{"a 1 MiB CSR (and the largest CSR a request can carry, garbage)", func(tg target) (string, []error) {
			body := make([]byte, 1<<20)
			rand.Read(body)
			body[0] = byte(wire.TypeEnrollRequest)
			codes, _, err := oneShot(tg.addr, rawFrame(body), false, closeLimit)
			if err == nil {
				err = wantCode(codes, true, wire.CodeFrameTooLarge)
			}
			errs := []error{err}
			if tg.role == "ca" {
				csr := make([]byte, wire.MaxCSRLen)
				rand.Read(csr)
				wc := dialRaw(tg.addr)
				if wc == nil {
					return "", []error{errors.New("dial failed")}
				}
				defer wc.Close()
				if err := wc.WriteMessage(&wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: 1, SID: "alice", CSR: csr, Root: rootFP(t, s.path("data/ca/root.pem"))}); err != nil {
					errs = append(errs, err)
				} else if _, err := wire.Expect[*wire.EnrollAccepted](wc.ReadMessage()); codeOf(err) != wire.CodeBadCSR {
					errs = append(errs, fmt.Errorf("16 KiB garbage CSR: got %v, want bad-csr", err))
				} else if err := wc.WriteMessage(&wire.Fetch{Version: wire.ProtocolVersion, Name: "root.pem"}); err != nil { // still served
					errs = append(errs, err)
				} else if _, err := receiveFile(wc); err != nil {
					errs = append(errs, fmt.Errorf("the connection after a refused CSR: %v", err))
				}
			}
			return "frame-too-large before reading it; 16 KiB garbage: bad-csr, connection still served", errs
		}},
		{"a certificate from a chain 50 deep, and one named like the root", func(tg target) (string, []error) {
			// A hello carries one certificate (PROTOCOL.md §5.1): the board
			// checks it against its root alone, so no intermediate of the
			// stranger's ever enters a path. The leaf of a chain 50 deep, and a
			// leaf whose issuer is named like the root, are refused
			// unknown-ca (the time is a figure, not a check: closeLimit
			// bounds a hang).
			errs := []error{}
			var figure []string
			for name, chain := range map[string][][]byte{"50 deep": deepChain(t, 50, "alice"), "named like the root": deepChain(t, 2, "alice")} {
				codes, took, err := oneShot(tg.addr, helloWith(t, "alice", chain[0]), false, closeLimit)
				switch {
				case err != nil:
				case tg.role == "board":
					err = wantCode(codes, false, wire.CodeUnknownCA)
				default:
					err = wantCode(codes, false, wire.CodeMalformed, wire.CodeUnexpectedMessage)
				}
				errs = append(errs, err)
				figure = append(figure, fmt.Sprintf("%s: %v in %v", name, codes, took.Round(time.Millisecond)))
			}
			return strings.Join(figure, "; "), errs
		}},
		{"slowloris (10 connections, one byte a second)", func(tg target) (string, []error) {
			var slowest atomic.Int64
			errs := forEach(10, 10, func(int) error {
				c, err := dialHostile(tg.addr, 0)
				if err != nil {
					return err
				}
				defer c.Close()
				start := time.Now()
				sent := 0
				for _, b := range tg.valid {
					if _, err := c.Write([]byte{b}); err != nil {
						break
					}
					sent++
					c.SetReadDeadline(time.Now().Add(time.Second))
					if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
						break // the daemon answered or closed
					} else if err == nil {
						awaitClose(c, closeLimit) //nolint:errcheck // the end is what counts
						break
					}
					if time.Since(start) > closeLimit {
						return fmt.Errorf("still open after %v and %d bytes", closeLimit, sent)
					}
				}
				took := time.Since(start)
				if int64(took) > slowest.Load() {
					slowest.Store(int64(took))
				}
				if took > hostileRead+2*time.Second {
					return fmt.Errorf("cut off only after %v (%d bytes); read_timeout is %v", took, sent, hostileRead)
				}
				return nil
			})
			return fmt.Sprintf("cut off within %v (read_timeout %v)", time.Duration(slowest.Load()).Round(100*time.Millisecond), hostileRead), errs
		}},
		{"a student who trickles one byte a second inside a session", func(tg target) (string, []error) {
			if tg.role != "board" {
				return "(board only)", nil
			}
			start := time.Now()
			err := trickle(tg.addr, id, 120)
			took := time.Since(start)
			if err == nil && took > hostileIdle+hostileRead+5*time.Second {
				err = fmt.Errorf("the board let a 1 B/s upload run for %v (idle_timeout %v)", took, hostileIdle)
			}
			return fmt.Sprintf("cut off after %v (idle_timeout %v)", took.Round(100*time.Millisecond), hostileIdle), []error{err}
		}},
		{"a client that keeps a connection with a small request before each idle_timeout", func(tg target) (string, []error) {
			if tg.role != "ca" {
				return "(CA only: a board session is one upload)", nil
			}
			wc := dialRaw(tg.addr)
			if wc == nil {
				return "", []error{errors.New("dial failed")}
			}
			defer wc.Close()
			start := time.Now()
			for i := range 20 {
				if err := wc.WriteMessage(&wire.Fetch{Version: wire.ProtocolVersion, Name: "root.pem"}); err != nil {
					return fmt.Sprintf("cut off at request %d, after %v", i+1, time.Since(start).Round(100*time.Millisecond)), nil
				}
				if _, err := receiveFile(wc); err != nil {
					if i < 1 || codeOf(err) != wire.CodeTimeout && !errors.Is(err, io.EOF) {
						return "", []error{fmt.Errorf("request %d: %v", i+1, err)}
					}
					return fmt.Sprintf("cut off at request %d, after %v (%v)", i+1, time.Since(start).Round(100*time.Millisecond), codeOf(err)), nil
				}
				time.Sleep(hostileIdle - 500*time.Millisecond)
			}
			return "", []error{fmt.Errorf("the CA served 20 requests spaced just under idle_timeout, for %v", time.Since(start).Round(time.Second))}
		}},
		{"a flood of 2,000 connections that close at once (half by reset)", func(tg target) (string, []error) {
			start := time.Now()
			errs := forEach(2000, 64, func(i int) error {
				c, err := dialHostile(tg.addr, 0)
				if err != nil {
					return err
				}
				if i%2 == 0 {
					c.SetLinger(0) //nolint:errcheck // RST instead of FIN
				}
				return c.Close()
			})
			return fmt.Sprintf("2000 in %v", time.Since(start).Round(time.Millisecond)), errs
		}},
		{"a client that stops reading", func(tg target) (string, []error) {
			if tg.role == "board" {
				// A student that completes the handshake and then neither
				// sends nor reads: cut off by read_timeout.
				start := time.Now()
				err := inSession(tg.addr, id, func(*session.Conn, *wire.Conn) error { return nil })
				return fmt.Sprintf("silent session closed in %v", time.Since(start).Round(100*time.Millisecond)), []error{err}
			}
			// Pipeline thousands of fetches through a 4 KiB receive buffer
			// and read nothing: the CA's writes block, and write_timeout cuts
			// the connection.
			const cycles = 20000
			c, err := dialHostile(tg.addr, 4096)
			if err != nil {
				return "", []error{err}
			}
			defer c.Close()
			var req []byte
			for range cycles {
				req = append(req, frameOf(t, &wire.Fetch{Version: wire.ProtocolVersion, Name: "root.pem"})...)
				req = append(req, frameOf(t, &wire.FileOffset{})...)
				req = append(req, frameOf(t, &wire.FileAck{})...)
			}
			go func() {
				c.SetWriteDeadline(time.Now().Add(closeLimit))
				c.Write(req) //nolint:errcheck // the CA cuts us off
			}()
			time.Sleep(2*hostileRead + time.Second)
			c.SetReadDeadline(time.Now().Add(closeLimit))
			n, err := io.Copy(io.Discard, c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return "", []error{fmt.Errorf("still open %v after the client stopped reading", closeLimit)}
			}
			full := int64(cycles) * int64(len(s.rootPEM(t)))
			if n >= full {
				return "", []error{fmt.Errorf("the CA answered every one of %d requests (%d bytes) to a client that did not read", cycles, n)}
			}
			return fmt.Sprintf("cut off after %d KiB of %d MiB asked for", n>>10, full>>20), nil
		}},
	}
}

// rootPEM returns the CA's root certificate file.
func (s *system) rootPEM(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(s.path("data/ca/root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// dialRaw opens a framed connection for a raw exchange, or nil.
func dialRaw(addr string) *wire.Conn {
	c, err := dialHostile(addr, 0)
	if err != nil {
		return nil
	}
	return wire.NewConn(c, wire.Options{MaxFrame: 1 << 20, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second})
}

// inSession completes a handshake with the board as id, runs wrong on the
// session, and expects the board to refuse (or, for a silent client, time
// out) and close within read_timeout and a margin.
func inSession(addr string, id identity, wrong func(sc *session.Conn, wc *wire.Conn) error) error {
	wc := dialRaw(addr)
	if wc == nil {
		return errors.New("dial failed")
	}
	defer wc.Close()
	wc.SetDeadline(time.Now().Add(15 * time.Second))
	sc, err := session.Client(wc, &session.ClientConfig{SID: id.cert.Subject.CommonName, Certificate: id.cert, Key: id.key, Root: id.root, BoardName: "blackboard"})
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if err := wrong(sc, wc); err != nil {
		return err
	}
	start := time.Now()
	_, took, err := awaitClose(wc.NetConn(), 15*time.Second)
	if err != nil {
		return err
	}
	if took > hostileRead+3*time.Second {
		return fmt.Errorf("the board kept the session %v (read_timeout %v)", took, hostileRead)
	}
	_ = start
	return nil
}

// trickle completes a handshake with the board as id, announces a file of n
// bytes and sends it one byte a second, each in its own Data record (so that
// every frame arrives well within read_timeout). It returns once the board
// has ended the session, or an error if it let all n bytes through.
func trickle(addr string, id identity, n int) error {
	nc, err := dialHostile(addr, 0)
	if err != nil {
		return err
	}
	wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord, ReadTimeout: -1, WriteTimeout: 15 * time.Second})
	defer wc.Close()
	wc.SetDeadline(time.Now().Add(15 * time.Second))
	sc, err := session.Client(wc, &session.ClientConfig{SID: id.cert.Subject.CommonName, Certificate: id.cert, Key: id.key, Root: id.root, BoardName: "blackboard"})
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	wc.SetDeadline(time.Time{})
	content := bytes.Repeat([]byte{'x'}, n)
	if err := sc.WriteMessage(session.NewSubmitRequest("lab", "slow.txt", int64(n), sha256.Sum256(content))); err != nil {
		return err
	}
	if _, err := wire.Expect[*wire.Terms](sc.ReadMessage()); err != nil {
		return err
	}
	if err := sc.WriteMessage(&wire.FileHeader{Name: "slow.txt", Size: uint64(n), SHA256: sha256.Sum256(content)}); err != nil {
		return err
	}
	if _, err := wire.Expect[*wire.FileOffset](sc.ReadMessage()); err != nil {
		return err
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			if _, err := sc.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for i := range n {
		select {
		case <-ended:
			return nil
		case <-time.After(time.Second):
		}
		if err := sc.WriteMessage(&wire.Data{Bytes: content[i : i+1]}); err != nil {
			return nil
		}
	}
	return fmt.Errorf("the board took all %d bytes at one byte a second", n)
}

// idleFlood opens n connections to addr at once and keeps them idle until
// the daemon answers each: busy (refused at max_conns) or timeout (held, then
// cut off by handshake_timeout). It calls during once all are open.
func idleFlood(addr string, n int, during func()) (held, busy int, errs []error) {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		conns = make([]*net.TCPConn, n)
	)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	errs = forEach(n, 200, func(i int) error {
		c, err := dialHostile(addr, 0)
		conns[i] = c
		return err
	})
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes, _, err := awaitClose(c, hostileHandshake+20*time.Second)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if len(errs) < 5 {
					errs = append(errs, err)
				}
			case slices.Contains(codes, wire.CodeBusy):
				busy++
			default:
				held++
			}
		}()
	}
	during()
	wg.Wait()
	return held, busy, errs
}

// TestHostileBattery throws hostile clients at real CA and board processes
// (PROTOCOL.md §1–5; DESIGN.md §6) while a legitimate student enrolls and
// submits, then checks that each daemon's goroutines, heap, descriptors and
// connections are back near their baseline, that nothing crashed and that
// both still stop cleanly. The figures go to the log (go test -v) and README.
func TestHostileBattery(t *testing.T) {
	in := newInstall(t, map[string]string{"ca": hostileLimits, "board": hostileLimits})
	s := &system{install: in}
	s.ca = in.start("ca", "--log-level", "info")
	s.board = in.start("board", "--ca-addr", s.ca.Addr, "--log-level", "info")

	// Warm up, then the legitimate student's latency before the battery.
	if _, err := s.legit("warmup"); err != nil {
		t.Fatal(err)
	}
	var before []time.Duration
	for i := range 3 {
		d, err := s.legit(fmt.Sprintf("before%d", i))
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, d)
	}
	id := s.enroll(t, "alice")
	base := map[string]daemonStats{"ca": s.stats("ca"), "board": s.stats("board")}
	for _, role := range []string{"ca", "board"} {
		t.Logf("baseline %-5s %s", role, statsLine(base[role]))
	}

	caFrame := frameOf(t, &wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: 1, SID: "truncated", CSR: makeCSR(t, ecKey(), "truncated"),
		Root: rootFP(t, s.path("data/ca/root.pem"))})
	targets := []target{
		{role: "ca", addr: s.ca.Addr, valid: caFrame},
		{role: "board", addr: s.board.Addr, valid: helloWith(t, "alice", id.cert.Raw)},
	}

	// The legitimate student, over and over while the battery runs.
	var (
		lmu      sync.Mutex
		during   []time.Duration
		legitErr []error
		legitN   atomic.Int64
	)
	stopLegit := make(chan struct{})
	legitDone := make(chan struct{})
	go func() {
		defer close(legitDone)
		for i := 0; ; i++ {
			select {
			case <-stopLegit:
				if i >= 2 {
					return
				}
			default:
			}
			d, err := s.legit(fmt.Sprintf("during%d", i))
			legitN.Add(1)
			lmu.Lock()
			if err != nil {
				legitErr = append(legitErr, err)
			} else {
				during = append(during, d)
			}
			lmu.Unlock()
		}
	}()

	// Phase 1: the content attacks, at both daemons at once.
	start := time.Now()
	type outcome struct {
		role, name, figure string
		errs               []error
	}
	var (
		omu      sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	for _, tg := range targets {
		for _, a := range hostileAttacks(t, s, id) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				figure, errs := a.run(tg)
				omu.Lock()
				outcomes = append(outcomes, outcome{tg.role, a.name, figure, errs})
				omu.Unlock()
			}()
		}
	}
	wg.Wait()
	sort.Slice(outcomes, func(i, j int) bool {
		return outcomes[i].name+outcomes[i].role < outcomes[j].name+outcomes[j].role
	})
	for _, o := range outcomes {
		t.Logf("%-5s %s: %s", o.role, o.name, o.figure)
		for _, err := range o.errs {
			if err != nil {
				t.Errorf("%s, %s: %v", o.role, o.name, err)
			}
		}
	}
	t.Logf("content attacks done in %v", time.Since(start).Round(100*time.Millisecond))
	close(stopLegit)
	<-legitDone
	for _, d := range []*daemon{s.ca, s.board} {
		select {
		case <-d.Exited():
			t.Fatalf("the %s died during the battery: %v\n%s", d.Name, d.Err(), d.Log())
		default:
		}
	}

	// Phase 2: 2,000 idle connections at once to each daemon. Each holds
	// max_conns and refuses the rest busy; the legitimate student is told
	// busy, tries again, and gets through once handshake_timeout reaps the
	// idle ones.
	const idle = 2000
	var (
		fmu     sync.Mutex
		flood   = map[string][3]int{}
		floodWG sync.WaitGroup
		mid     = map[string]daemonStats{}
		sampled = make(chan struct{})
		ready   sync.WaitGroup
	)
	ready.Add(len(targets))
	go func() { ready.Wait(); close(sampled) }()
	var (
		phase2Latency time.Duration
		phase2Out     string
		phase2Err     error
	)
	for _, tg := range targets {
		floodWG.Add(1)
		go func() {
			defer floodWG.Done()
			held, busy, errs := idleFlood(tg.addr, idle, func() { ready.Done(); <-sampled })
			for _, err := range errs {
				t.Errorf("%s, %d idle connections: %v", tg.role, idle, err)
			}
			fmu.Lock()
			flood[tg.role] = [3]int{held, busy}
			fmu.Unlock()
		}()
	}
	<-sampled
	floodStart := time.Now()
	legitP2 := make(chan struct{})
	go func() {
		defer close(legitP2)
		phase2Latency, phase2Out, phase2Err = s.legitOut("during-idle-flood")
	}()
	for _, role := range []string{"ca", "board"} {
		st, err := adminStats(s.path("data", role))
		if err != nil {
			t.Errorf("%s stats during the idle flood: %v", role, err)
		}
		mid[role] = st
	}
	floodWG.Wait()
	<-legitP2
	t.Logf("idle flood lasted %v", time.Since(floodStart).Round(100*time.Millisecond))
	for _, role := range []string{"ca", "board"} {
		f, st := flood[role], mid[role]
		t.Logf("during %-5s %s", role, statsLine(st))
		t.Logf("%-5s %d idle connections at once: %d held (max_conns %d), %d refused busy", role, idle, f[0], st.MaxConns, f[1])
		if st.OpenConns > int64(st.MaxConns) || st.OpenConns < int64(st.MaxConns-16) {
			t.Errorf("%s held %d connections during the flood, want max_conns = %d", role, st.OpenConns, st.MaxConns)
		}
		if f[0]+f[1] != idle || f[0] > st.MaxConns || f[0] < st.MaxConns-16 {
			t.Errorf("%s: %d held and %d refused of %d, want about max_conns = %d held and the rest refused", role, f[0], f[1], idle, st.MaxConns)
		}
	}
	for _, d := range []*daemon{s.ca, s.board} {
		// 976 refusals in a burst are a line or two of log, not 976.
		if n := d.Logged("refused busy"); n > 5 {
			t.Errorf("the %s logged the refusals of the flood in %d lines", d.Name, n)
		}
	}
	if phase2Err != nil {
		t.Errorf("the legitimate student during the idle flood: %v", phase2Err)
	} else {
		t.Logf("legitimate student during the idle flood: %v; told busy %d times (CA %d, board %d), it tried again",
			phase2Latency.Round(time.Millisecond), strings.Count(phase2Out, "is busy; trying again"),
			strings.Count(phase2Out, "the CA is busy"), strings.Count(phase2Out, "the board is busy"))
	}
	lmu.Lock()
	for _, err := range legitErr {
		t.Errorf("the legitimate student during the battery: %v", err)
	}
	t.Logf("legitimate student: before the battery %s; during the content attacks %s (%d runs)",
		latencies(before), latencies(during), len(during))
	lmu.Unlock()

	// Afterwards: back near the baseline, within a bounded wait.
	var after map[string]daemonStats
	deadline := time.Now().Add(30 * time.Second)
	for {
		after = map[string]daemonStats{"ca": s.stats("ca"), "board": s.stats("board")}
		settled := true
		for role, st := range after {
			b := base[role]
			settled = settled && st.clientConns() == 0 && st.Goroutines <= b.Goroutines+2 && st.FDs <= b.FDs+2
		}
		if settled || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, role := range []string{"ca", "board"} {
		st, b := after[role], base[role]
		t.Logf("after  %-5s %s", role, statsLine(st))
		if n := st.clientConns(); n != 0 {
			t.Errorf("%s: %d connections still open after the battery", role, n)
		}
		if st.Goroutines > b.Goroutines+2 {
			t.Errorf("%s: %d goroutines after the battery, %d before: leaked", role, st.Goroutines, b.Goroutines)
		}
		if st.FDs > b.FDs+2 {
			t.Errorf("%s: %d descriptors after the battery, %d before: leaked", role, st.FDs, b.FDs)
		}
		if limit := max(2*b.HeapInuse, b.HeapInuse+8<<20); st.HeapInuse > limit {
			t.Errorf("%s: heap in use %d bytes after the battery, %d before", role, st.HeapInuse, b.HeapInuse)
		}
	}

	// Every legitimate submission is there; the daemons are alive, never
	// panicked, and stop cleanly.
	listed := map[string]bool{}
	for _, sub := range s.submissions() {
		listed[sub.SID] = true
	}
	for i := range int(legitN.Load()) {
		if sid := fmt.Sprintf("during%d", i); !listed[sid] && !slices.ContainsFunc(legitErr, func(e error) bool { return strings.Contains(e.Error(), sid+":") }) {
			t.Errorf("%s's receipted submission is not listed", sid)
		}
	}
	if !listed["during-idle-flood"] && phase2Err == nil {
		t.Error("the submission made during the idle flood is not listed")
	}
	for _, d := range []*daemon{s.board, s.ca} {
		if code := d.stop(); code != 0 {
			t.Errorf("%s exit after SIGTERM: %d", d.Name, code)
		}
		if d.crashed() {
			t.Errorf("%s log shows a crash or a race", d.Name)
		}
	}
}

// latencies summarizes durations as "median M, max X".
func latencies(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("median %v, max %v", s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}
