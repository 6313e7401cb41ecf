package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// boardStudents is the number of concurrent students of the board row.
const boardStudents = 64

// student is a pre-enrolled student of a load run.
type student struct {
	sid   string
	key   crypto.Signer
	cert  *x509.Certificate
	roots *x509.CertPool
	root  *x509.Certificate
	msg   []byte
}

// enrollStudents enrolls n students with the CA at addr, keys of alg.
func enrollStudents(in *install, addr, alg string, n int) []*student {
	out := make([]*student, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sid := fmt.Sprintf("bench-%03d", i)
			res, err := ca.Client{Addr: addr}.Enroll(context.Background(), ca.EnrollOptions{
				SID: sid, KeyAlgorithm: alg, OutDir: in.path("students", sid),
			})
			if err != nil {
				fatalf("enroll %s: %v", sid, err)
			}
			key, err := keys.ReadPrivateKey(res.KeyPath, nil)
			if err != nil {
				fatalf("%v", err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(res.Root)
			out[i] = &student{sid: sid, key: key, cert: res.Certificate, roots: roots, root: res.Root,
				msg: bytes.Repeat([]byte(fmt.Sprintf("This is submission from %s.\n", sid)), 10)}
		}()
	}
	wg.Wait()
	return out
}

// boardSessions measures sessions per second of the real board process with
// 64 concurrent pre-enrolled students (handshake, the ten lines, durable store,
// signed receipt) against a crypto/tls 1.3 server process with mutual
// authentication and Go's default key exchange, serving the same certificates,
// reading the same ten lines, writing them with fsync and answering one byte.
func (r *runner) boardSessions() []row {
	var rows []row
	for _, alg := range strings.Split(*boardAlgs, ",") {
		in := newInstall(map[string]string{"board": fmt.Sprintf("key_algorithm = %q", alg)})
		ca := in.start(r.bin, "ca")
		board := in.start(r.bin, "board", "--ca-addr", ca.addr)
		students := enrollStudents(in, ca.addr, alg, boardStudents)
		tlsSrv := startTLSPeer(in, "tls-server")

		var ours, base []float64
		var cpu, ownCPU, tlsCPU, tlsOwnCPU []float64
		for i := range r.count {
			m := meterCPU(board.cmd.Process.Pid)
			ours = append(ours, sessionLoad(board.addr, students))
			c, o := m.perOp(ours[i])
			cpu, ownCPU = append(cpu, c), append(ownCPU, o)
			m = meterCPU(tlsSrv.cmd.Process.Pid)
			base = append(base, tlsLoad(tlsSrv.addr, students))
			c, o = m.perOp(base[i])
			tlsCPU, tlsOwnCPU = append(tlsCPU, c), append(tlsOwnCPU, o)
			logf("board %s run %d: %.0f sessions/s ours (CPU per session: board %.0f µs, students %.0f µs), %.0f TLS 1.3 (server %.0f µs, clients %.0f µs)",
				alg, i+1, ours[i], cpu[i], ownCPU[i], base[i], tlsCPU[i], tlsOwnCPU[i])
		}
		tlsSrv.stop()
		board.stop()
		ca.stop()
		in.remove()
		r.raw("board sessions/s, %s: ours %v, TLS 1.3 %v", alg, ours, base)
		r.raw("CPU per session, µs, %s: board %v, students %v; TLS 1.3 server %v, clients %v", alg, cpu, ownCPU, tlsCPU, tlsOwnCPU)
		target := 1.0
		if alg != "ecdsa-p256" {
			target = 0
		}
		rows = append(rows, row{
			name:     fmt.Sprintf("board sessions, %d concurrent students, %s", boardStudents, strings.ToUpper(alg)),
			baseline: "crypto/tls 1.3, RequireAndVerifyClientCert, X25519MLKEM768, same certs, 10 lines fsynced, 1-byte ack",
			unit:     "sessions/s", ours: ours, base: base, target: target,
		}, row{
			name: "  CPU per session: the board process",
			baseline: fmt.Sprintf("the students (this program): %.0f µs; TLS 1.3: server %.0f µs, clients %.0f µs",
				median(ownCPU), median(tlsCPU), median(tlsOwnCPU)),
			unit: "µs", ours: cpu, note: "diagnostic",
		})
	}
	return rows
}

// sessionLoad runs the students against the board for one window and returns
// completed sessions (receipt verified) per second.
func sessionLoad(addr string, students []*student) float64 {
	return throughput(len(students), func(i int) (func() error, func()) {
		s := students[i]
		cfg := &session.ClientConfig{SID: s.sid, Certificate: s.cert, Key: s.key, Root: s.root, BoardName: "blackboard"}
		sum := sha256.Sum256(s.msg)
		return func() error {
			if err := submitOnce(addr, cfg, s.msg, sum); err != nil {
				return fmt.Errorf("session %s: %w", s.sid, err)
			}
			return nil
		}, nil
	})
}

func submitOnce(addr string, cfg *session.ClientConfig, msg []byte, sum [32]byte) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord})
	wc.SetDeadline(time.Now().Add(30 * time.Second))
	sc, err := session.Client(wc, cfg)
	if err != nil {
		return err
	}
	defer sc.Close()
	_, _, err = sc.Submit(session.NewSubmitRequest("lab", "message.txt", int64(len(msg)), sum), bytes.NewReader(msg), session.SubmitOptions{})
	return err
}

// tlsLoad is sessionLoad against the TLS 1.3 baseline server.
func tlsLoad(addr string, students []*student) float64 {
	return throughput(len(students), func(i int) (func() error, func()) {
		s := students[i]
		cfg := &tls.Config{
			Certificates:       []tls.Certificate{{Certificate: [][]byte{s.cert.Raw}, PrivateKey: s.key, Leaf: s.cert}},
			MinVersion:         tls.VersionTLS13,
			InsecureSkipVerify: true, // the board certificate has no DNS name; checked below instead
			VerifyConnection:   verifyBoard(s.roots),
		}
		return func() error {
			if err := tlsOnce(addr, cfg, s.msg); err != nil {
				return fmt.Errorf("tls session %s: %w", s.sid, err)
			}
			return nil
		}, nil
	})
}

// verifyBoard checks the server certificate as our student checks the board's:
// chain to the root, EKU serverAuth, CN blackboard.
func verifyBoard(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no server certificate")
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return err
		}
		if leaf.Subject.CommonName != "blackboard" {
			return errors.New("wrong server name")
		}
		return nil
	}
}

func tlsOnce(addr string, cfg *tls.Config, msg []byte) error {
	d := &net.Dialer{Timeout: 30 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return err
	}
	return nil
}

// tlsServer is the baseline server process: this program re-run as
// `bench tls-server`.
type tlsServer struct{ *daemon }

// startTLSPeer runs one of the TLS 1.3 baseline servers — this program re-run
// as `bench SUB` (tls-server or tls-upload) — with the key, certificate and
// root of in's board (which has started once), storing into a directory of
// its own under in.
func startTLSPeer(in *install, sub string) *tlsServer {
	dir := in.path(sub)
	os.MkdirAll(filepath.Join(dir, "store"), 0o700)
	keyPath, certPath, root := in.path("data/board/key.pem"), in.path("data/board/cert.pem"), in.path("data/board/root.pem")
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	args := []string{sub, "-key", keyPath, "-cert", certPath, "-root", root, "-dir", filepath.Join(dir, "store")}
	if *profileFlag != "" {
		profiles++
		args = append(args, "-cpuprofile", fmt.Sprintf("%s/%s-%d.prof", *profileFlag, sub, profiles))
	}
	cmd := exec.Command(self, args...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		fatalf("%s: %v", sub, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return &tlsServer{&daemon{cmd: cmd, addr: strings.TrimSpace(line), done: done}}
}

// listenTLSPeer is the start of a TLS peer's main (tls-server, tls-upload):
// it parses the flags startTLSPeer passes, starts the CPU profile if asked
// (stopped at SIGTERM), listens on a loopback port with tlsServerConfig and
// prints the address. It returns the listener and the store directory.
func listenTLSPeer(sub string, args []string) (net.Listener, string) {
	fs := flag.NewFlagSet(sub, flag.ExitOnError)
	keyPath := fs.String("key", "", "")
	certPath := fs.String("cert", "", "")
	rootPath := fs.String("root", "", "")
	dir := fs.String("dir", "", "")
	cpuprofile := fs.String("cpuprofile", "", "")
	fs.Parse(args)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatalf("%v", err)
		}
		pprof.StartCPUProfile(f)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		go func() { <-sig; pprof.StopCPUProfile(); f.Close(); os.Exit(0) }()
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsServerConfig(*keyPath, *certPath, *rootPath))
	if err != nil {
		fatalf("%v", err)
	}
	fmt.Println(ln.Addr().String())
	return ln, *dir
}

// tlsServerMain is the TLS 1.3 baseline board: mutual authentication against
// the root, Go's default key exchange (X25519MLKEM768 first), ten lines read,
// written to a new file and fsynced, one byte answered.
func tlsServerMain(args []string) {
	ln, dir := listenTLSPeer("tls-server", args)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			var buf bytes.Buffer
			for range 10 {
				line, err := br.ReadBytes('\n')
				if err != nil {
					return
				}
				buf.Write(line)
			}
			f, err := os.CreateTemp(dir, "sub-*")
			if err != nil {
				return
			}
			f.Write(buf.Bytes())
			err = f.Sync()
			f.Close()
			if err != nil {
				return
			}
			c.Write([]byte{1})
		}()
	}
}
