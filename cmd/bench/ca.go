package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// caClients is the number of concurrent enrolling clients of the CA row.
const caClients = 16

// caIssuance measures durable issuance by the real CA process, 16 concurrent
// clients with pre-made CSRs over loopback: under policy "token", with a
// one-time token per enrollment (made before each window, never inside it),
// against step-ca (stepca.go) with a one-time token per certificate and the
// same clients; and under policy "open". The limit rows set both against an
// in-process loop that does the same CSR check and x509.CreateCertificate on
// the same cores with no I/O at all. Each run measures every one of them, one
// after another, so that all see the same machine; pkiboard's token CA and
// step-ca swap places from run to run.
func (r *runner) caIssuance() []row {
	csrs := make([][]byte, caClients)
	clientKeys := make([]*ecdsa.PrivateKey, caClients)
	for i := range csrs {
		clientKeys[i] = newP256()
		var err error
		csrs[i], err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("bench-%02d", i)}}, clientKeys[i])
		if err != nil {
			fatalf("%v", err)
		}
	}
	stepBin, err := exec.LookPath(*stepCAFlag)
	if err != nil {
		fatalf("the ca row's peer: %v (make bench builds step-ca into .tools/)", err)
	}
	in := newInstall(nil)
	defer in.remove()
	ca := in.start(r.bin, "ca")
	defer ca.stop()
	tin := newInstall(map[string]string{"ca": `policy = "token"`})
	defer tin.remove()
	tca := tin.start(r.bin, "ca")
	defer tca.stop()
	supply := newTokenClients(clientKeys, pkiboardTokens(tin.path("data/ca/admin.sock")))
	step := startStepCA(stepBin)
	defer step.stop()
	stepSupply := newTokenClients(clientKeys, step.ticket)
	logf("ca: peer %s (%s), database badgerv2, a JWK provisioner", step.version, stepBin)

	root, err := keys.ReadCertificate(in.path("data/ca/root.pem"))
	if err != nil {
		fatalf("%v", err)
	}
	fp := keys.Fingerprint(root)
	troot, err := keys.ReadCertificate(tin.path("data/ca/root.pem"))
	if err != nil {
		fatalf("%v", err)
	}
	tfp := keys.Fingerprint(troot)
	var ours, tok, peer, base []float64
	var cpu, ownCPU, tcpu, townCPU, pcpu, pownCPU []float64
	mostSpent, stepMost, made, stepMade := 0, 0, 0, 0
	for i := range r.count {
		m := meterCPU(ca.cmd.Process.Pid)
		ours = append(ours, enrollLoad(ca.addr, fp, csrs, true))
		c, o := m.perOp(ours[i])
		cpu, ownCPU = append(cpu, c), append(ownCPU, o)

		ourTokens := func() {
			n, took := supply.fill(tokenNeed(ours[i], caClients, mostSpent))
			made += n
			m := meterCPU(tca.cmd.Process.Pid)
			rate, most := tokenEnrollLoad(tca.addr, tfp, supply)
			tok, mostSpent = append(tok, rate), max(mostSpent, most)
			c, o := m.perOp(rate)
			tcpu, townCPU = append(tcpu, c), append(townCPU, o)
			logf("ca run %d: with tokens %.0f/s (CA %.0f µs, clients %.0f µs; %d tokens made before the window in %.1fs)",
				i+1, rate, c, o, n, took.Seconds())
		}
		stepCA := func() {
			n, took := stepSupply.fill(tokenNeed(ours[i]/2, caClients, stepMost))
			stepMade += n
			m := meterCPU(step.cmd.Process.Pid)
			rate, most := stepEnrollLoad(step, stepSupply)
			peer, stepMost = append(peer, rate), max(stepMost, most)
			c, o := m.perOp(rate)
			pcpu, pownCPU = append(pcpu, c), append(pownCPU, o)
			logf("ca run %d: step-ca %.0f/s (step-ca %.0f µs, clients %.0f µs; %d tokens made before the window in %.1fs)",
				i+1, rate, c, o, n, took.Seconds())
		}
		if i%2 == 0 {
			ourTokens()
			stepCA()
		} else {
			stepCA()
			ourTokens()
		}

		base = append(base, issueInMemory(csrs))
		logf("ca run %d: %.0f enrollments/s durable over TCP, policy open (CPU per enrollment: CA %.0f µs, clients %.0f µs); "+
			"with tokens %.0f/s, step-ca %.0f/s (%.2f×); %.0f issuances/s in memory",
			i+1, ours[i], cpu[i], ownCPU[i], tok[i], peer[i], tok[i]/peer[i], base[i])
	}
	r.raw("CA issuance, policy open, enrollments/s: %v\nwith one-time tokens, enrollments/s: %v\n%s with one-time tokens, certificates/s: %v\nin-memory CSR check + CreateCertificate, /s: %v",
		ours, tok, step.version, peer, base)
	r.raw("CPU per enrollment, µs: CA %v, clients %v; with tokens: CA %v, clients %v; step-ca %v, its clients %v; tokens made in all: %d ours, %d step-ca's",
		cpu, ownCPU, tcpu, townCPU, pcpu, pownCPU, made, stepMade)

	// The floor: the same exchange with nothing behind it, and the ceiling it
	// implies with the baseline's cryptography added (per-enrollment costs add).
	floor := r.nullCAFloor(root.Raw, fp, csrs)
	ceiling := 1 / (1/median(floor) + 1/median(base))
	logf("ca: null CA %.0f exchanges/s; with the baseline's cryptography added, at most %.0f/s = %.2f× the baseline", median(floor), ceiling, ceiling/median(base))
	r.raw("null CA exchanges/s: %v; implied ceiling %.0f/s", floor, ceiling)
	limit := "limit: in-process CSR check + x509.CreateCertificate, no I/O, all cores"
	return []row{
		{
			name:     fmt.Sprintf("CA issuance with one-time tokens, durable, %d concurrent clients, pre-made CSRs, a token made before the window for each enrollment, vs %s", caClients, step.version),
			baseline: fmt.Sprintf("%s: badgerv2 database, a JWK provisioner's one-time token (ES256 JWT) per certificate, the same %d clients on HTTPS keep-alive", step.version, caClients),
			unit:     "certs/s", ours: tok, base: peer, target: 2.0,
		},
		{
			name:     "  CPU per certificate with tokens: the CA process",
			baseline: fmt.Sprintf("%s: %.0f µs (range %.0f–%.0f); the clients (this program): ours %.0f µs, step-ca's %.0f µs", step.version, median(pcpu), slices.Min(pcpu), slices.Max(pcpu), median(townCPU), median(pownCPU)),
			unit:     "µs", ours: tcpu, note: "diagnostic",
		},
		{
			name:     fmt.Sprintf("  the same, with tokens: against the %s", limit[len("limit: "):]),
			baseline: limit,
			unit:     "certs/s", ours: tok, base: base,
		},
		{
			name:     fmt.Sprintf("CA issuance, policy open, durable, %d concurrent clients, pre-made CSRs", caClients),
			baseline: limit,
			unit:     "certs/s", ours: ours, base: base,
		},
		{
			name:     "  CPU per enrollment, policy open: the CA process",
			baseline: fmt.Sprintf("the %d clients (this program): %.0f µs", caClients, median(ownCPU)),
			unit:     "µs", ours: cpu, note: "diagnostic",
		},
		{
			name:     "  the same exchange with no CSR check, signing or storage (null CA)",
			baseline: fmt.Sprintf("floor of the wire exchange; with the limit's crypto added: ≤ %.0f/s = %.2f× the limit", ceiling, ceiling/median(base)),
			unit:     "exchanges/s", ours: floor, note: "diagnostic",
		},
	}
}

// enrollLoad runs caClients connections, each enrolling its CSR again and again
// for one window, and returns certificates issued per second. Each request
// names the root whose fingerprint is fp. With check, each answer is checked
// as a client checks it (checkIssued); the null CA's answers are not.
func enrollLoad(addr string, fp [32]byte, csrs [][]byte, check bool) float64 {
	return throughput(len(csrs), func(i int) (func() error, func()) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fatalf("dial CA: %v", err)
		}
		wc := wire.NewConn(c, wire.Options{})
		req := &wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: wire.ProfileStudent, SID: fmt.Sprintf("bench-%02d", i), CSR: csrs[i], Root: fp}
		var spki []byte
		if check {
			spki = mustParseCSR(csrs[i]).RawSubjectPublicKeyInfo
		}
		return func() error {
			if err := enrollOnce(wc, req, spki); err != nil {
				return fmt.Errorf("enroll: %w", err)
			}
			return nil
		}, func() { c.Close() }
	})
}

// enrollOnce sends one request and takes the answer, which carries the
// certificate; unless spki is nil, it checks that certificate as a client
// does (checkIssued).
func enrollOnce(wc *wire.Conn, req *wire.EnrollRequest, spki []byte) error {
	if err := wc.WriteMessage(req); err != nil {
		return err
	}
	acc, err := wire.Expect[*wire.EnrollAccepted](wc.ReadMessage())
	if err != nil || spki == nil {
		return err
	}
	return checkIssued(acc.Certificate, spki)
}

func mustParseCSR(der []byte) *x509.CertificateRequest {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		fatalf("%v", err)
	}
	return csr
}

// issueInMemory is the baseline: on GOMAXPROCS goroutines, parse and check each
// CSR and sign a certificate for it with a P-256 root (the CA's default), for
// one window; it returns certificates per second.
func issueInMemory(csrs [][]byte) float64 {
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, _ := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	root, _ := x509.ParseCertificate(rootDER)
	return throughput(runtime.GOMAXPROCS(0), func(w int) (func() error, func()) {
		i := w
		return func() error {
			csr, err := x509.ParseCertificateRequest(csrs[i%len(csrs)])
			i++
			if err != nil {
				return err
			}
			if err := csr.CheckSignature(); err != nil {
				return err
			}
			serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
			tmpl := &x509.Certificate{
				SerialNumber: serial, Subject: pkix.Name{CommonName: csr.Subject.CommonName},
				NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(180 * 24 * time.Hour),
				KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
			}
			_, err = x509.CreateCertificate(rand.Reader, tmpl, root, csr.PublicKey, rootKey)
			return err
		}, nil
	})
}

// nullCA is the protocol floor of the CA row: a server (this program re-run as
// `bench null-ca`) that answers each EnrollRequest exactly as the CA does on the
// wire — one EnrollAccepted carrying a certificate of the CA's own size — with
// no checks, no signing and no storage. Its throughput with the same clients
// bounds what any CA speaking this exchange on these cores can reach, before
// it does any cryptography.
func (r *runner) nullCAFloor(certDER []byte, fp [32]byte, csrs [][]byte) []float64 {
	dir, err := os.MkdirTemp("", "pkibench-null")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "cert.der"), certDER, 0o600); err != nil {
		fatalf("%v", err)
	}
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	cmd := exec.Command(self, "null-ca", dir)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fatalf("%v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		fatalf("null-ca: %v", err)
	}
	addr := strings.TrimSpace(line)
	var res []float64
	for range r.count {
		res = append(res, enrollLoad(addr, fp, csrs, false))
	}
	return res
}

// nullCAMain serves the null CA (see nullCAFloor) on a loopback port it prints.
func nullCAMain(args []string) {
	certDER, err := os.ReadFile(filepath.Join(args[0], "cert.der"))
	if err != nil {
		fatalf("%v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	fmt.Println(ln.Addr().String())
	accepted := nullCAAnswer(certDER)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			wc := wire.NewConn(c, wire.Options{})
			for {
				if _, err := wire.Expect[*wire.EnrollRequest](wc.ReadMessage()); err != nil {
					return
				}
				if wc.WriteMessage(accepted) != nil {
					return
				}
			}
		}()
	}
}

// nullCAAnswer is the null CA's one answer to every request: a fixed serial
// and notAfter, and certDER (the root's) as both the certificate and the
// root, so that it is as long as a real answer.
func nullCAAnswer(certDER []byte) *wire.EnrollAccepted {
	return &wire.EnrollAccepted{Serial: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, NotAfter: 1 << 31, Certificate: certDER, Root: certDER}
}
