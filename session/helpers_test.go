package session

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

var update = flag.Bool("update", false, "rewrite the seed corpora under testdata/fuzz/")

// Fixed times of the test PKI: every certificate is valid from pkiStart to
// pkiEnd unless a test says otherwise, and fuzz targets run at fixedNow.
var (
	pkiStart = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	pkiEnd   = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	fixedNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
)

const (
	testBoardName = "blackboard"
	testSID       = "1155000001"
)

// ecKey returns a deterministic ECDSA key derived from label, so that the test
// PKI (certificates are signed with RFC 6979, deterministically) is the same
// in every process: the committed fuzz seeds depend on it.
func ecKey(curve elliptic.Curve, label string) *ecdsa.PrivateKey {
	size := (curve.Params().BitSize + 7) / 8
	seed := sha256.Sum256([]byte("pkiboard session test key " + label))
	d := make([]byte, size)
	for i := range d {
		d[i] = seed[i%len(seed)] ^ byte(i/len(seed))
	}
	d[0] &= 0x7f // below the order of P-256 and P-384
	k, err := ecdsa.ParseRawPrivateKey(curve, d)
	if err != nil {
		panic(err)
	}
	return k
}

// identity is a certificate chain (leaf first) and its key.
type identity struct {
	chain []*x509.Certificate
	key   crypto.Signer
}

func (id identity) leaf() *x509.Certificate { return id.chain[0] }

// testCA is a root (or intermediate) that issues test certificates.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool
}

// certSpec describes a certificate to issue.
type certSpec struct {
	cn        string
	key       crypto.Signer
	eku       []x509.ExtKeyUsage
	isCA      bool
	notBefore time.Time
	notAfter  time.Time
	serial    int64
}

var serials struct {
	sync.Mutex
	n int64
}

func nextSerial() int64 {
	serials.Lock()
	defer serials.Unlock()
	serials.n++
	return 1000 + serials.n
}

func newRoot(name string, key crypto.Signer) *testCA {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             pkiStart,
		NotAfter:              pkiEnd,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs a certificate for s; a nil s.key gets a deterministic P-256 key.
func (ca *testCA) issue(s certSpec) identity {
	if s.notBefore.IsZero() {
		s.notBefore = pkiStart
	}
	if s.notAfter.IsZero() {
		s.notAfter = pkiEnd
	}
	if s.serial == 0 {
		s.serial = nextSerial()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(s.serial),
		Subject:               pkix.Name{CommonName: s.cn},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		ExtKeyUsage:           s.eku,
		BasicConstraintsValid: true,
		IsCA:                  s.isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if s.isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if _, ok := s.key.Public().(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(nil, tmpl, ca.cert, s.key.Public(), ca.key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return identity{chain: []*x509.Certificate{cert}, key: s.key}
}

// testPKI is the PKI of the tests: the course root, another root, the board
// and students of every key type.
type testPKI struct {
	root, other *testCA
	board       identity
	students    map[string]identity // by key type: "p256", "p384", "rsa2048"
	keys        map[string]crypto.Signer
}

var (
	pkiOnce   sync.Once
	sharedPKI *testPKI
)

// pki returns the shared test PKI. The RSA key is random (and made once per
// process); everything else is deterministic.
func pki(tb testing.TB) *testPKI {
	tb.Helper()
	pkiOnce.Do(func() {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		p := &testPKI{
			root:  newRoot("CUHK Course Root CA", ecKey(elliptic.P256(), "root")),
			other: newRoot("Some Other Root CA", ecKey(elliptic.P256(), "other root")),
			keys: map[string]crypto.Signer{
				"p256":    ecKey(elliptic.P256(), "student p256"),
				"p384":    ecKey(elliptic.P384(), "student p384"),
				"rsa2048": rsaKey,
			},
			students: map[string]identity{},
		}
		p.board = p.root.issue(certSpec{cn: testBoardName, key: ecKey(elliptic.P256(), "board"),
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, serial: 2})
		for i, kt := range []string{"p256", "p384", "rsa2048"} {
			p.students[kt] = p.root.issue(certSpec{cn: testSID, key: p.keys[kt],
				eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, serial: int64(10 + i)})
		}
		sharedPKI = p
	})
	return sharedPKI
}

// otherStudent is a student certificate for testSID from another root.
func (p *testPKI) otherStudent() identity {
	return p.other.issue(certSpec{cn: testSID, key: p.keys["p256"], eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, serial: 3})
}

// ed25519Key is a deterministic Ed25519 key, for the unsupported-key case.
func ed25519Key() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("pkiboard session test ed25519"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// detRand is a deterministic random source for fuzz targets.
func detRand(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return mathrand.NewChaCha8(s)
}

// testCRLNumber is the CRL number of the board's status in the tests.
const testCRLNumber = 5

// boardStatus returns the encoded status of the board's certificate, signed
// by the root, after change (if set) changed it: by default good, of CRL
// number testCRLNumber, and valid for the whole life of the test PKI, so that
// it serves every clock of the tests.
func (p *testPKI) boardStatus(tb testing.TB, change func(*wire.BoardStatus)) []byte {
	tb.Helper()
	return p.statusFor(tb, p.board.leaf(), change)
}

// statusFor is boardStatus for another board certificate.
func (p *testPKI) statusFor(tb testing.TB, board *x509.Certificate, change func(*wire.BoardStatus)) []byte {
	tb.Helper()
	s := &wire.BoardStatus{
		Serial:     board.SerialNumber.Bytes(),
		CertSHA256: sha256.Sum256(board.Raw),
		CRLNumber:  testCRLNumber,
		ThisUpdate: uint64(pkiStart.Unix()),
		NextUpdate: uint64(pkiEnd.Unix()),
	}
	key := p.root.key
	if change != nil {
		change(s)
	}
	return signStatus(tb, s, key)
}

// signStatus signs s with key and encodes it.
func signStatus(tb testing.TB, s *wire.BoardStatus, key crypto.Signer) []byte {
	tb.Helper()
	msg, err := s.SignedBytes()
	if err != nil {
		tb.Fatal(err)
	}
	if s.Signature, err = keys.Sign(key, rand.Reader, msg); err != nil {
		tb.Fatal(err)
	}
	data, err := s.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// goodStatus is the board's default status, signed once per process.
var goodStatus struct {
	sync.Once
	data []byte
}

// serverConfig returns the board's config for p: its certificate, key and
// status, the course root, and a replay cache of its own.
func (p *testPKI) serverConfig() *ServerConfig {
	goodStatus.Do(func() {
		goodStatus.data = p.boardStatus(testingTB{}, nil)
	})
	status := goodStatus.data
	return &ServerConfig{Certificate: p.board.leaf(), Key: p.board.key, Root: p.root.cert,
		Status: func() []byte { return status }, Replays: NewReplayCache(0)}
}

// clientConfig returns a student's config for the student of key type kt.
func (p *testPKI) clientConfig(kt string) *ClientConfig {
	st := p.students[kt]
	return &ClientConfig{SID: testSID, Certificate: st.leaf(), Key: st.key, Root: p.root.cert, BoardName: testBoardName}
}

// testingTB is a testing.TB for the shared fixtures made outside a test's
// failure reporting: it panics instead of failing.
type testingTB struct{ testing.TB }

func (testingTB) Helper()                        {}
func (testingTB) Fatal(args ...any)              { panic(fmt.Sprint(args...)) }
func (testingTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// memConn is a net.Conn that reads from a fixed input and records what is
// written: a whole handshake or record stream runs in-process, for fuzzing.
type memConn struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func newMemConn(input []byte) *memConn { return &memConn{r: bytes.NewReader(input)} }

func (m *memConn) Read(p []byte) (int, error)         { return m.r.Read(p) }
func (m *memConn) Write(p []byte) (int, error)        { return m.out.Write(p) }
func (m *memConn) Close() error                       { return nil }
func (m *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (m *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (m *memConn) SetDeadline(t time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(t time.Time) error { return nil }

// frame returns payload as a frame: its 4-byte length, then itself.
func frame(payload []byte) []byte {
	var b bytes.Buffer
	if err := wire.WriteFrame(&b, payload); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// frames splits a byte stream into frame payloads.
func frames(tb testing.TB, stream []byte) [][]byte {
	tb.Helper()
	var out [][]byte
	r := bytes.NewReader(stream)
	for {
		p, err := wire.ReadFrame(r, 1<<20, nil)
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatalf("splitting frames: %v", err)
		}
		out = append(out, p)
	}
}

// Connection options of the tests: bounded, so that a hang fails the test.
const (
	testTimeout      = 10 * time.Second
	boardMaxFrame    = 128 << 10
	testWaitDeadline = 30 * time.Second
)

func boardWire(nc net.Conn) *wire.Conn {
	c := wire.NewConn(nc, wire.Options{MaxFrame: boardMaxFrame, ReadTimeout: testTimeout, WriteTimeout: testTimeout})
	c.SetDeadline(time.Now().Add(testTimeout))
	return c
}

func studentWire(nc net.Conn) *wire.Conn {
	c := wire.NewConn(nc, wire.Options{ReadTimeout: testTimeout, WriteTimeout: testTimeout})
	c.SetDeadline(time.Now().Add(testTimeout))
	return c
}

// listen returns a loopback listener on an ephemeral port, closed at the end
// of the test.
func listen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// direction of a frame through the proxy.
type direction int

const (
	c2s direction = iota // student to board
	s2c                  // board to student
)

func (d direction) String() string { return [...]string{"c2s", "s2c"}[d] }

// tamperFunc decides what the proxy forwards for the i-th frame (from 0) in
// direction d: the frames returned, in order (none to drop it). It may keep
// state, to delay a frame for example; each direction calls it from its own
// goroutine.
type tamperFunc func(d direction, i int, payload []byte) [][]byte

// proxy relays frames between a student and the board and can change them:
// the adversary on the network. It records every frame it sees.
type proxy struct {
	ln     net.Listener
	target string
	tamper tamperFunc

	mu       sync.Mutex
	recorded [2][][]byte // frames as received from each side, before tampering
	done     chan struct{}
}

func startProxy(tb testing.TB, target string, tamper tamperFunc) *proxy {
	p := &proxy{ln: listen(tb), target: target, tamper: tamper, done: make(chan struct{})}
	go p.serveOne()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// serveOne relays one connection; it returns when both directions are done.
func (p *proxy) serveOne() {
	defer close(p.done)
	student, err := p.ln.Accept()
	if err != nil {
		return
	}
	defer student.Close()
	board, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer board.Close()
	deadline := time.Now().Add(testTimeout)
	student.SetDeadline(deadline)
	board.SetDeadline(deadline)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.relay(c2s, student, board) }()
	go func() { defer wg.Done(); p.relay(s2c, board, student) }()
	wg.Wait()
}

func (p *proxy) relay(d direction, from, to net.Conn) {
	defer to.(*net.TCPConn).CloseWrite()
	for i := 0; ; i++ {
		payload, err := wire.ReadFrame(from, 1<<20, nil)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.recorded[d] = append(p.recorded[d], bytes.Clone(payload))
		p.mu.Unlock()
		out := [][]byte{payload}
		if p.tamper != nil {
			out = p.tamper(d, i, payload)
		}
		for _, f := range out {
			if err := wire.WriteFrame(to, f); err != nil {
				return
			}
		}
	}
}

// frames returns what the proxy recorded in direction d, once it is done.
func (p *proxy) frames(tb testing.TB, d direction) [][]byte {
	tb.Helper()
	select {
	case <-p.done:
	case <-time.After(testWaitDeadline):
		tb.Fatal("the proxy did not finish")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recorded[d]
}

// result is the outcome of one session, from both sides.
type result struct {
	serverErr error       // from Server, ReceiveSubmission or SendReceipt
	sub       *Submission // what ReceiveSubmission returned
	received  []byte      // the content the board received
	board     *Conn

	clientErr error
	receipt   *wire.Receipt
	student   *Conn
}

// scenario is one session to run.
type scenario struct {
	server  *ServerConfig
	client  *ClientConfig
	name    string // file name; "message.txt" if empty
	content []byte
	tamper  tamperFunc // if set, the session goes through a proxy
	course  Course     // the board's course; a testCourse if nil
	proxy   **proxy    // if set, receives the proxy
	dial    func(addr string) (net.Conn, error)
	// beforeReceipt, if set, may change the board's Conn before it signs the
	// receipt: tests use it to play a board that names another certificate.
	beforeReceipt func(*Conn)
	// receipt, if set, changes the receipt's fields before the board signs
	// it: tests use it to play a board that signs what the student did not
	// send or was not told.
	receipt func(*wire.Receipt)
}

// runSession runs a student and a board through a handshake and a submission
// over loopback TCP and returns what each side saw. Every wait is bounded.
func runSession(t *testing.T, sc scenario) result {
	t.Helper()
	if sc.name == "" {
		sc.name = "message.txt"
	}
	ln := listen(t)
	type boardOut struct {
		err      error
		sub      *Submission
		received []byte
		conn     *Conn
	}
	boardDone := make(chan boardOut, 1)
	go func() {
		var out boardOut
		defer func() { boardDone <- out }()
		nc, err := ln.Accept()
		if err != nil {
			out.err = err
			return
		}
		defer wire.LingerClose(nc, 2*time.Second, math.MaxInt64)
		conn, err := Server(boardWire(nc), sc.server)
		if err != nil {
			out.err = err
			return
		}
		out.conn = conn
		sub, err := receiveSubmission(conn, sc.course, &wire.Receiver{MaxSize: 1 << 30})
		if err != nil {
			out.err = err
			return
		}
		out.sub = sub
		out.received = sub.File.Sink.(*wire.Memory).Bytes()
		if sc.beforeReceipt != nil {
			sc.beforeReceipt(conn)
		}
		receipt := &wire.Receipt{
			ID:         "sub-0001",
			SID:        conn.SID(),
			Serial:     conn.PeerCertificate().SerialNumber.Bytes(),
			Assignment: sub.Terms.Assignment,
			Original:   sub.Original,
			Name:       sub.File.Name,
			Size:       uint64(sub.File.Size),
			SHA256:     sub.File.SHA256,
			Received:   uint64(sub.Received.UnixMilli()),
			Due:        sub.Terms.Due,
			Late:       sub.Late(),
			Version:    1,
		}
		if sc.receipt != nil {
			sc.receipt(receipt)
		}
		out.err = conn.SendReceipt(receipt)
	}()

	addr := ln.Addr().String()
	var px *proxy
	if sc.tamper != nil {
		px = startProxy(t, addr, sc.tamper)
		addr = px.addr()
		if sc.proxy != nil {
			*sc.proxy = px
		}
	}
	var r result
	dial := sc.dial
	if dial == nil {
		dial = func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	nc, err := dial(addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn, err := Client(studentWire(nc), sc.client)
	if err != nil {
		r.clientErr = err
	} else {
		r.student = conn
		r.receipt, r.clientErr = submit(conn, sc.name, sc.content)
		conn.Close()
	}
	nc.Close()

	select {
	case out := <-boardDone:
		r.serverErr, r.sub, r.received, r.board = out.err, out.sub, out.received, out.conn
	case <-time.After(testWaitDeadline):
		t.Fatal("the board did not finish")
	}
	if r.board != nil {
		r.board.Close()
	}
	return r
}

// codeOf returns the code of the *wire.Refusal (local) or *wire.Error (from
// the peer) in err's chain, and which it was.
func codeOf(err error) (code wire.Code, local bool, ok bool) {
	var ref *wire.Refusal
	if errors.As(err, &ref) {
		return ref.Code, true, true
	}
	var peer *wire.Error
	if errors.As(err, &peer) {
		return peer.Code, false, true
	}
	return 0, false, false
}

// wantRefusal checks that err carries a local *wire.Refusal with code.
func wantRefusal(t *testing.T, side string, err error, code wire.Code) {
	t.Helper()
	var ref *wire.Refusal
	if !errors.As(err, &ref) {
		t.Errorf("%s: got error %v, want a *wire.Refusal with code %v", side, err, code)
		return
	}
	if ref.Code != code {
		t.Errorf("%s: got refusal %v (%q), want code %v", side, ref.Code, ref.Text, code)
	}
}

// wantPeerError checks that err carries a *wire.Error from the peer with code.
func wantPeerError(t *testing.T, side string, err error, code wire.Code) {
	t.Helper()
	var peer *wire.Error
	if !errors.As(err, &peer) {
		t.Errorf("%s: got error %v, want the peer's *wire.Error with code %v", side, err, code)
		return
	}
	if peer.Code != code {
		t.Errorf("%s: got the peer's error %v, want code %v", side, peer, code)
	}
}

// testCourse is a Course of one assignment of any name, with terms of its
// own (their Assignment set to the one asked for, MaxSize 1 GiB if unset).
type testCourse struct {
	terms   wire.Terms
	history []wire.HistoryItem
}

func (c *testCourse) Terms(_ string, req *wire.SubmitRequest, _ time.Time) (*wire.Terms, error) {
	t := c.terms
	if t.Assignment == "" {
		t.Assignment = req.Assignment
	}
	if t.MaxSize == 0 {
		t.MaxSize = 1 << 30
	}
	return &t, nil
}

func (c *testCourse) History(string, string) ([]wire.HistoryItem, error) { return c.history, nil }

func (c *testCourse) Assignments(string, time.Time) ([]wire.AssignmentItem, error) {
	return []wire.AssignmentItem{{ID: "lab", MaxSize: 1 << 30}}, nil
}

// receiveSubmission reads the student's request, which must be a
// SubmitRequest, and receives it with course (a testCourse if nil) into r.
func receiveSubmission(conn *Conn, course Course, r *wire.Receiver) (*Submission, error) {
	m, err := conn.ReadRequest()
	if err != nil {
		return nil, err
	}
	req, ok := m.(*wire.SubmitRequest)
	if !ok {
		return nil, fmt.Errorf("got a %v, want a SubmitRequest", m.Type())
	}
	if course == nil {
		course = &testCourse{}
	}
	return conn.ReceiveSubmission(req, course, func(*wire.Terms) *wire.Receiver { return r })
}

// submit submits content under original to the lab.
func submit(conn *Conn, original string, content []byte) (*wire.Receipt, error) {
	r, _, err := conn.Submit(NewSubmitRequest("lab", original, int64(len(content)), sha256.Sum256(content)), bytes.NewReader(content), SubmitOptions{})
	return r, err
}
