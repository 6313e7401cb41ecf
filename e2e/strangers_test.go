package e2e

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// A strangerPlan is what the attacker process of TestStrangersCostLittle
// does: from each source address, workers connections at a time, each
// sending one of frames and reading the board's first answer, for duration.
type strangerPlan struct {
	Addr     string
	Frames   [][]byte
	Sources  []string
	Workers  int
	Duration time.Duration
}

// A strangerResult is what the attacker saw.
type strangerResult struct {
	Attempts int            // connections made
	Busy     int            // answered busy at once
	Read     int            // answered anything else: the board read the hello
	Served   int            // of those, answered with a ServerHello
	Codes    map[string]int // the refusals, by code
	Failed   int            // connections that failed or got no answer
	LastErr  string
}

// stranger is one phase of TestStrangersCostLittle's figures.
type stranger struct {
	name        string
	res         strangerResult
	elapsed     time.Duration
	boardCPU    time.Duration
	attackerCPU time.Duration
	legit       []time.Duration
	legitErrs   []error
}

func (f stranger) String() string {
	per := func(d time.Duration, n int) string {
		if n == 0 {
			return "-"
		}
		return (d / time.Duration(n)).Round(100 * time.Nanosecond).String()
	}
	return fmt.Sprintf("%s: %d connections in %v (%d busy at accept, %d hellos read by the board, %d answered with a ServerHello; refusals %v; %d failed); "+
		"board CPU %v (%s a connection, %s a hello read), attacker CPU %v (%s a connection); legitimate student %s",
		f.name, f.res.Attempts, f.elapsed.Round(100*time.Millisecond), f.res.Busy, f.res.Read, f.res.Served, f.res.Codes, f.res.Failed,
		f.boardCPU.Round(time.Millisecond), per(f.boardCPU, f.res.Attempts), per(f.boardCPU, f.res.Read),
		f.attackerCPU.Round(time.Millisecond), per(f.attackerCPU, f.res.Attempts), latencies(f.legit))
}

// processCPU returns the user and system CPU time the process pid has used,
// from /proc (in clock ticks of 10 ms).
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name, "(…)": state is field 3, utime 14, stime 15.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// runStrangers runs plan in a process of its own (this test binary, as
// TestHelperStranger), so that its CPU time is the attacker's alone, while
// a legitimate student submits from 127.0.0.1 over and over; it returns the
// figures.
func (s *system) runStrangers(t *testing.T, name string, plan strangerPlan, legit identity) stranger {
	t.Helper()
	planFile := s.path(name + ".plan.json")
	data, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(planFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f := stranger{name: name}
	pid := s.board.Cmd.Process.Pid
	boardBefore := processCPU(t, pid)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStranger$", "-test.v")
	cmd.Env = append(os.Environ(), "PKIBOARD_STRANGER_PLAN="+planFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The legitimate student, one submission after another until the
	// attack ends (at least two).
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the attacker process: %v\n%s", err, out.String())
			}
			done = nil
		default:
		}
		if done == nil && i >= 2 {
			break
		}
		began := time.Now()
		if err := submitAs(t, s.board.Addr, "alice", legit.cert, legit.key, legit.root); err != nil {
			f.legitErrs = append(f.legitErrs, err)
		} else {
			f.legit = append(f.legit, time.Since(began))
		}
	}
	f.elapsed = time.Since(start)
	time.Sleep(200 * time.Millisecond) // the board finishes the last connections
	f.boardCPU = processCPU(t, pid) - boardBefore
	f.attackerCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	line := out.String()
	i := strings.Index(line, "STRANGER RESULT ")
	if i < 0 {
		t.Fatalf("the attacker process printed no result:\n%s", line)
	}
	line = line[i+len("STRANGER RESULT "):]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	if err := json.Unmarshal([]byte(line), &f.res); err != nil {
		t.Fatalf("the attacker's result %q: %v", line, err)
	}
	return f
}

// TestHelperStranger is the attacker process of TestStrangersCostLittle: it
// runs the plan in PKIBOARD_STRANGER_PLAN and prints its result.
func TestHelperStranger(t *testing.T) {
	path := os.Getenv("PKIBOARD_STRANGER_PLAN")
	if path == "" {
		t.Skip("run by TestStrangersCostLittle")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var plan strangerPlan
	if err := json.Unmarshal(data, &plan); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		res = strangerResult{Codes: map[string]int{}}
		wg  sync.WaitGroup
		n   atomic.Int64
	)
	end := time.Now().Add(plan.Duration)
	for _, src := range plan.Sources {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		for range plan.Workers {
			wg.Go(func() {
				for time.Now().Before(end) {
					frame := plan.Frames[int(n.Add(1))%len(plan.Frames)]
					kind, code, err := strangerAttempt(&d, plan.Addr, frame)
					mu.Lock()
					res.Attempts++
					switch {
					case err != nil:
						res.Failed++
						res.LastErr = err.Error()
					case kind == wire.TypeError && code == wire.CodeBusy:
						res.Busy++
					default:
						res.Read++
						if kind == wire.TypeServerHello {
							res.Served++
						} else {
							res.Codes[code.String()]++
						}
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	out, _ := json.Marshal(res)
	fmt.Printf("STRANGER RESULT %s\n", out)
}

// strangerAttempt sends frame on a new connection and returns the type of
// the board's first answer, and its code if it is an Error.
func strangerAttempt(d *net.Dialer, addr string, frame []byte) (wire.Type, wire.Code, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(frame) //nolint:errcheck // a busy board may have closed already
	p, err := wire.ReadFrame(c, 64<<10, nil)
	if err != nil {
		return 0, 0, err
	}
	m, err := wire.Unmarshal(p)
	if err != nil {
		return 0, 0, err
	}
	if e, ok := m.(*wire.Error); ok {
		return wire.TypeError, e.Code, nil
	}
	return m.Type(), 0, nil
}

// strangerSources are the attacker's loopback addresses, distinct from the
// legitimate student's 127.0.0.1.
var strangerSources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"}

// TestStrangersCostLittle measures what hostile hellos from strangers cost
// the board and the attacker (finding 6), with the attacker on eight
// loopback sources of its own while a legitimate student submits from
// 127.0.0.1: hellos with a certificate the board's root did not sign (a
// refusal at STEP 3), with the per-source limit and without it, and a
// recorded hello replayed. With the limit, a source that keeps failing is
// answered busy at accept, before the board reads anything: the board reads
// at most source_burst hellos of each source and source_rate a second after
// that, and the student is served throughout. The figures go to the log (go
// test -v).
func TestStrangersCostLittle(t *testing.T) {
	const (
		duration = 3 * time.Second
		workers  = 4
		burst    = 32
		rate     = 4
	)
	// A stranger's hello: a certificate of its own making, for a SID of the
	// course; the board refuses it at STEP 3 (unknown-ca).
	key := ecKey()
	self := testcert.Issue(t, &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "1155099999"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, nil, key.Public(), key)
	var junk [][]byte
	for range 16 {
		junk = append(junk, helloWith(t, "1155099999", self.Raw))
	}

	phase := func(name string, extra string, frames func(s *system, alice identity) [][]byte) (stranger, *system) {
		extras := map[string]string{}
		if extra != "" {
			extras["board"] = extra
		}
		s := startSystem(t, extras)
		alice := s.enroll(t, "alice")
		var quiet []time.Duration
		for range 10 {
			began := time.Now()
			if err := submitAs(t, s.board.Addr, "alice", alice.cert, alice.key, alice.root); err != nil {
				t.Fatalf("%s: the legitimate student before the attack: %v", name, err)
			}
			quiet = append(quiet, time.Since(began))
		}
		t.Logf("%s: the legitimate student before the attack: %s", name, latencies(quiet))
		f := s.runStrangers(t, name, strangerPlan{Addr: s.board.Addr, Frames: frames(s, alice), Sources: strangerSources, Workers: workers, Duration: duration}, alice)
		t.Log(f)
		for _, err := range f.legitErrs {
			t.Errorf("%s: the legitimate student: %v", name, err)
		}
		if f.res.Failed > f.res.Attempts/100 {
			t.Errorf("%s: %d of %d connections failed (last: %s)", name, f.res.Failed, f.res.Attempts, f.res.LastErr)
		}
		return f, s
	}

	limited, _ := phase("unknown-ca hellos, per-source limit on (defaults)", "",
		func(*system, identity) [][]byte { return junk })
	// What the limit allows: each source's burst, then its rate.
	if allowed := len(strangerSources) * (burst + int(rate*(limited.elapsed.Seconds()+1))); limited.res.Read > allowed {
		t.Errorf("the board read %d hellos of %d failing sources in %v; the limit allows %d",
			limited.res.Read, len(strangerSources), limited.elapsed.Round(time.Millisecond), allowed)
	}
	if limited.res.Busy < limited.res.Attempts/2 {
		t.Errorf("only %d of %d connections of failing sources were answered busy at accept", limited.res.Busy, limited.res.Attempts)
	}

	open, _ := phase("unknown-ca hellos, per-source limit off", "source_burst = 0\nmax_unproven = 1024",
		func(*system, identity) [][]byte { return junk })
	if open.res.Busy != 0 {
		t.Errorf("without the per-source limit, %d connections were answered busy", open.res.Busy)
	}

	// A recorded hello, replayed. Today the board does all its STEP 4 work
	// for it before the peer proves anything (it is a proven session by the
	// limiter's measure once the handshake completes); the session rewrite
	// refuses it at STEP 3 as stale-hello, and then it counts as a failure.
	replayed, _ := phase("replayed hellos", "",
		func(s *system, alice identity) [][]byte {
			return [][]byte{helloWith(t, "alice", alice.cert.Raw)}
		})
	_ = replayed

	if limited.res.Read > 0 && open.res.Read > 0 {
		t.Logf("board CPU a connection: %v with the limit, %v without",
			limited.boardCPU/time.Duration(max(1, limited.res.Attempts)), open.boardCPU/time.Duration(max(1, open.res.Attempts)))
	}
}

// TestCALimitsAFailingSource checks the per-source limit at the CA, whose
// connections stay open after a refusal: a source that sends bad requests is
// cut off once out of tries, then answered busy at accept, while a student
// on another source enrolls.
func TestCALimitsAFailingSource(t *testing.T) {
	// A rate so low that no try is earned back while the test runs.
	in := newInstall(t, map[string]string{"ca": "source_rate = 0.001"})
	s := &system{install: in}
	s.ca = in.start("ca")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	// A request of version 2 that names the CA's root (so that it passes
	// the checks before the CSR's) with a CSR that does not parse: bad-csr,
	// and, with no authorization, a refusal of a peer that proved nothing.
	root := mustCert(t, in.path("data", "ca", "root.pem"))
	bad := frameOf(t, &wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: wire.ProfileStudent, SID: "1155000001",
		CSR: []byte("not a CSR"), Root: keys.Fingerprint(root)})

	// One connection, bad request after bad request: the CA answers each
	// (bad-csr), and ends the connection when the source has no try left.
	c, err := d.Dial("tcp", s.ca.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	refusals := 0
	for range 100 {
		if _, err := c.Write(bad); err != nil {
			break
		}
		p, err := wire.ReadFrame(c, 64<<10, nil)
		if err != nil {
			break
		}
		if m, err := wire.Unmarshal(p); err == nil {
			if e, ok := m.(*wire.Error); ok && e.Code == wire.CodeBadCSR {
				refusals++
			}
		}
	}
	if refusals != 32 {
		t.Errorf("the CA answered %d bad requests on one connection, want source_burst (32) and then the end of it", refusals)
	}
	// Now the source is answered busy at once.
	kind, code, err := strangerAttempt(&d, s.ca.Addr, bad)
	if err != nil || kind != wire.TypeError || code != wire.CodeBusy {
		t.Errorf("a new connection from the failing source: got %v %v, %v; want busy", kind, code, err)
	}
	// A student elsewhere is served.
	s.mustRun(nil, "enroll", "--sid", "1155000002", "--out", s.path("ids", "1155000002"), "--ca-addr", s.ca.Addr)
	st := in.stats("ca")
	if st.AnonymousRefusals["bad-csr"] != 32 || st.Refused < 1 {
		t.Errorf("stats: anonymous refusals %v, refused %d", st.AnonymousRefusals, st.Refused)
	}
}
