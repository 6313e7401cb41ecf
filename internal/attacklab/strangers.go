package attacklab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/binary"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// bombKeyPEM is the chain bomb's RSA-8192 key: the attacker's own, made once
// (an 8192-bit key takes a minute to generate) and kept here, public — it
// signs nothing anyone trusts.
//
//go:embed testdata/bomb-rsa8192.pem
var bombKeyPEM []byte

// The strangers' flood: hellos from sources of their own, 127.0.x.1 and up
// (not the students' 127.0.0.1), each source sending fewer than the board's
// source_burst (32), so that every hello is read and the figure measures
// the board's work on it rather than the per-source limit.
const (
	floodSources   = 64
	floodPerSource = 30
	floodParallel  = 8
)

// sources returns n loopback addresses 127.0.net.1 and up.
func sources(net, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.%d.%d", net, i+1)
	}
	return out
}

// floodResult is what a flood of hellos came to, from the attacker's side,
// and what it cost both sides.
type floodResult struct {
	Sent        int            // hellos sent, one connection each
	Sources     int            // distinct source addresses
	Answers     map[string]int // the board's first answers: a code's name, "ServerHello", or "busy"
	Failed      int            // connections with no answer
	LastErr     string
	Elapsed     time.Duration
	BoardCPU    time.Duration // the board process's CPU time during the flood (/proc)
	AttackerCPU time.Duration // the attacker's (this process's, getrusage), making and sending the hellos
	Step3       int           // the board's "STEP 3: student certificate checked" lines during the flood
	BoardLines  int           // all the board's log lines during the flood
}

// read returns how many hellos the board read and answered (not busy).
func (r floodResult) read() int { return r.Sent - r.Failed - r.Answers["busy"] }

// per returns d per n, rounded for the table.
func per(d time.Duration, n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return (d / time.Duration(n)).Round(time.Microsecond)
}

// helloFlood sends a hello made by next(i) from each source, perSource
// times, on one connection each, floodParallel at a time, and reads the
// board's first answer. It measures the board's CPU time and its own.
func (l *Lab) helloFlood(ctx context.Context, srcs []string, perSource int, next func(i int) []byte) (floodResult, error) {
	res := floodResult{Sources: len(srcs), Answers: map[string]int{}}
	pid := l.board.Cmd.Process.Pid
	mark := l.board.Mark()
	boardBefore, err := processCPU(pid)
	if err != nil {
		return res, err
	}
	selfBefore := selfCPU()
	start := time.Now()
	var (
		mu  sync.Mutex
		n   atomic.Int64
		wg  sync.WaitGroup
		sem = make(chan struct{}, floodParallel)
	)
	for _, src := range srcs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for range perSource {
				frame := next(int(n.Add(1)))
				got, err := helloAttempt(ctx, src, l.board.Addr, frame)
				mu.Lock()
				res.Sent++
				if err != nil {
					res.Failed++
					res.LastErr = err.Error()
				} else {
					res.Answers[got]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	time.Sleep(100 * time.Millisecond) // the board closes the last connections
	boardAfter, err := processCPU(pid)
	if err != nil {
		return res, err
	}
	res.BoardCPU, res.AttackerCPU = boardAfter-boardBefore, selfCPU()-selfBefore
	for _, r := range l.board.Since(mark) {
		res.BoardLines++
		if strings.HasPrefix(r.Msg(), "STEP 3: student certificate checked") {
			res.Step3++
		}
	}
	return res, nil
}

// helloAttempt sends frame on a new connection from src and returns the
// board's first answer: an Error's code name, "busy", or the message type.
func helloAttempt(ctx context.Context, src, addr string, frame []byte) (string, error) {
	wc, err := dialFrom(ctx, src, addr)
	if err != nil {
		return "", err
	}
	defer wc.Close()
	if _, err := wc.NetConn().Write(frame); err != nil {
		return "", err
	}
	m, err := wc.ReadMessage()
	if err != nil {
		return "", err
	}
	if e, ok := m.(*wire.Error); ok {
		return e.Code.String(), nil
	}
	return m.Type().String(), nil
}

// processCPU returns the user and system CPU time the process pid has used,
// from /proc/pid/stat (in clock ticks of 10 ms).
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("the board's CPU time: %w", err)
	}
	// The fields after the command name, "(…)": utime is field 14, stime 15.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, data)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// selfCPU returns the CPU time this process has used (getrusage).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// strangerFinding is what a flood of hostile hellos observed.
type strangerFinding struct {
	What  string    // the hellos
	Want  wire.Code // the board's refusal of each
	Flood floodResult
	// Baseline is a flood of as many hellos refused at once for their date
	// (stale-hello at the second check of STEP 3, before anything but
	// decoding): what any hello costs the board at the least — the
	// connection, reading, decoding, answering.
	Baseline floodResult
	// MaxFactor is how much more than the baseline a hostile hello may
	// cost the board: a hash and a lookup (a replay), a certificate parsed
	// and its signature algorithm compared (a bomb) — not a signature
	// verified, an HPKE or X-Wing operation, or a log line. Measured on
	// this 2-core machine: a replay 0.8–1.0× the baseline (2.4–4.2× with
	// the replay check left to after the hello's signature), a bomb
	// 1.3–1.8×, with the race detector or without.
	MaxFactor float64
	V1        string        // version 1's figures, for comparison
	MaxBoard  time.Duration // the most board CPU per hello that is no bomb (0: no bound)
}

// baseline floods the board with hello, dated an hour back, from the
// sources of net: refused at once for its date.
func (l *Lab) baseline(ctx context.Context, net int, hello []byte) (floodResult, error) {
	h, err := wire.Expect[*wire.ClientHello](wire.Unmarshal(hello[wire.HeaderSize:]))
	if err != nil {
		return floodResult{}, err
	}
	h.Time = uint64(time.Now().Add(-time.Hour).UnixMilli())
	stale := frameOf(h)
	return l.helloFlood(ctx, sources(net, floodSources), floodPerSource, func(int) []byte { return stale })
}

// version 1's figures (issue 12), for the table.
const (
	v1ChainBomb = "version 1: 55 ms of board CPU per hello, ≈240× the attacker's"
	v1Replay    = "version 1: 325–438 µs of board CPU per replayed hello vs 44–110 µs of the attacker's, and two log lines"
)

// playChainBomb floods the board with chain bombs: hellos whose certificate
// is issued, by its name, by the course root, and signed by the attacker's
// RSA-8192 key, with new bytes each time so that no cache knows it.
func playChainBomb(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &strangerFinding{What: "chain bombs", Want: wire.CodeUnknownCA, V1: v1ChainBomb, MaxFactor: 3, MaxBoard: 5500 * time.Microsecond}
	leaf, err := bombLeaf(l.root, "alice-bomb")
	if err != nil {
		return f, err
	}
	kemPublic, sig := make([]byte, 1216), make([]byte, 64)
	rand.Read(kemPublic)
	rand.Read(sig)
	next := func(i int) []byte {
		cert := bytes.Clone(leaf)
		// The last bytes of the signature: a counter, so that the board's
		// certificate cache never knows the certificate.
		cert[len(cert)-1], cert[len(cert)-2], cert[len(cert)-3] = byte(i), byte(i>>8), byte(i>>16)
		h := &wire.ClientHello{Version: wire.ProtocolVersion, SID: "alice-bomb", Certificate: cert,
			Time: uint64(time.Now().UnixMilli()), Suites: []uint16{0x0001}, KEM: wire.KEMXWing, KEMPublic: kemPublic, Signature: sig}
		rand.Read(h.Random[:])
		return frameOf(h)
	}
	if f.Baseline, err = l.baseline(ctx, 4, next(0)); err != nil {
		return f, err
	}
	f.Flood, err = l.helloFlood(ctx, sources(5, floodSources), floodPerSource, next)
	return f, err
}

// bombLeaf makes the chain bomb's certificate for sid: its issuer is named
// like root (name and key id), its signature is by the attacker's RSA-8192
// key.
func bombLeaf(root *x509.Certificate, sid string) ([]byte, error) {
	signer, err := keys.ParsePrivatePEM(bombKeyPEM, nil)
	if err != nil {
		return nil, fmt.Errorf("the chain bomb's key: %w", err)
	}
	holder, _, err := ownCSR(sid) // a key for the leaf; the CSR is not used
	if err != nil {
		return nil, err
	}
	req, err := x509.ParseCertificateRequest(holder)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: sid},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	parent := &x509.Certificate{Subject: root.Subject, SubjectKeyId: root.SubjectKeyId, PublicKey: signer.Public()}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, req.PublicKey, signer)
}

// playHelloReplay records a legitimate student's ClientHello on the wire and
// replays it to the board, many times, from many sources.
func playHelloReplay(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &strangerFinding{What: "replays of a recorded hello", Want: wire.CodeStaleHello, V1: v1Replay, MaxFactor: 1.5}
	observer, err := newTap(l.board.Addr, nil)
	if err != nil {
		return f, err
	}
	student, err := l.runStudent(ctx, dir, "student", "alice-replay", l.ca.Addr, observer.Addr(), true)
	observer.Close()
	if err != nil {
		return f, err
	}
	if student.code != 0 {
		return f, fmt.Errorf("the student whose hello is recorded: %s", outcomeOf(student))
	}
	var hello []byte
	for _, c := range observer.recorded() {
		if p, err := wire.ReadFrame(bytes.NewReader(c.toServer), maxTapped, nil); err == nil && len(p) > 0 && wire.Type(p[0]) == wire.TypeClientHello {
			hello = append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
			break
		}
	}
	if hello == nil {
		return f, fmt.Errorf("no ClientHello recorded")
	}
	if f.Baseline, err = l.baseline(ctx, 7, hello); err != nil {
		return f, err
	}
	f.Flood, err = l.helloFlood(ctx, sources(6, floodSources), floodPerSource, func(int) []byte { return hello })
	return f, err
}

func (f *strangerFinding) judge() (j judgement) {
	r := f.Flood
	read := r.read()
	j.did = fmt.Sprintf("sent %d %s from %d sources, one connection each", r.Sent, f.What, r.Sources)
	j.detected = "the board: " + codeName(f.Want)
	ratio := "—"
	if per(r.AttackerCPU, r.Sent) > 0 {
		ratio = fmt.Sprintf("%.1f× the attacker's", float64(r.BoardCPU)/float64(r.AttackerCPU))
	}
	base := per(f.Baseline.BoardCPU, f.Baseline.read())
	j.outcome = fmt.Sprintf("%d of %d refused %s in %v; no ServerHello, no STEP 3 line of a checked student (the board logged %d lines: refusals, a burst of 10 then one a second); board CPU %v per hello (%v in all; a hello refused for its date alone: %v) vs the attacker's %v (%v): %s (%s)",
		r.Answers[f.Want.String()], r.Sent, f.Want, r.Elapsed.Round(10*time.Millisecond), r.BoardLines,
		per(r.BoardCPU, read), r.BoardCPU.Round(time.Millisecond), base, per(r.AttackerCPU, r.Sent), r.AttackerCPU.Round(time.Millisecond), ratio, f.V1)
	if n := r.Answers[wire.TypeServerHello.String()]; n > 0 {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the board answered %d of them with a ServerHello: HPKE, X-Wing and its signature for a peer that proved nothing", n))
	}
	if r.Step3 > 0 {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the board logged %d STEP 3 lines for them", r.Step3))
	}
	if limit := time.Duration(f.MaxFactor * float64(base)); base > 0 && per(r.BoardCPU, read) > limit {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the board spent %v of CPU per hello, more than %.1f× what a hello refused for its date alone costs it (%v): work for a peer that proved nothing",
			per(r.BoardCPU, read), f.MaxFactor, base))
	}
	if f.Baseline.Sent == 0 || f.Baseline.Answers[wire.CodeStaleHello.String()] != f.Baseline.Sent {
		j.problems = append(j.problems, fmt.Sprintf("the baseline's hellos, dated an hour back, were not all refused stale-hello: %v", f.Baseline.Answers))
	}
	if f.MaxBoard > 0 && per(r.BoardCPU, read) > f.MaxBoard {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the board spent %v of CPU per hello, more than %v", per(r.BoardCPU, read), f.MaxBoard))
	}
	if r.Sent == 0 {
		j.problems = append(j.problems, "no hello was sent")
	}
	for answer, n := range r.Answers {
		if answer != f.Want.String() && answer != wire.TypeServerHello.String() {
			j.problems = append(j.problems, fmt.Sprintf("%d answered %s, not %s", n, answer, f.Want))
		}
	}
	if r.Failed > 0 {
		j.problems = append(j.problems, fmt.Sprintf("%d connections got no answer (last: %s)", r.Failed, r.LastErr))
	}
	return j
}
