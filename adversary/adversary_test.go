package adversary

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// These tests put the adversary between an in-process student and board
// (package session's Client and Server over loopback TCP), one attack at a
// time. The end-to-end versions, with real processes, are in e2e/attacks_test.go.

const (
	testSID     = "alice"
	testTimeout = 20 * time.Second
)

// ident is a certificate chain and its key.
type ident struct {
	chain []*x509.Certificate
	key   crypto.Signer
}

// testPKI is a root and the certificates of the course scenario, and the
// board's status, signed by the root.
type testPKI struct {
	root                  *x509.Certificate
	board, alice, mallory ident
	status                []byte
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
)

func pki(t *testing.T) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		now := time.Now()
		rootTmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Course Root"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
		if err != nil {
			panic(err)
		}
		root, _ := x509.ParseCertificate(der)
		issue := func(serial int64, cn string, eku x509.ExtKeyUsage) ident {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
				KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, ExtKeyUsage: []x509.ExtKeyUsage{eku},
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
			if err != nil {
				panic(err)
			}
			c, _ := x509.ParseCertificate(der)
			return ident{chain: []*x509.Certificate{c}, key: key}
		}
		p := &testPKI{root: root}
		p.board = issue(2, "blackboard", x509.ExtKeyUsageServerAuth)
		p.alice = issue(3, testSID, x509.ExtKeyUsageClientAuth)
		p.mallory = issue(4, "mallory", x509.ExtKeyUsageClientAuth)
		b := p.board.chain[0]
		st := &wire.BoardStatus{Serial: b.SerialNumber.Bytes(), CertSHA256: sha256.Sum256(b.Raw), CRLNumber: 1,
			ThisUpdate: uint64(now.Add(-time.Minute).Unix()), NextUpdate: uint64(now.Add(time.Hour).Unix())}
		msg, _ := st.SignedBytes()
		st.Signature, _ = keys.Sign(rootKey, rand.Reader, msg)
		p.status, _ = st.Marshal()
		pkiVal = p
	})
	return pkiVal
}

// message is the course's submission for sid.
func message(sid string) []byte {
	return []byte(strings.Repeat("This is submission from "+sid+".\n", 10))
}

// report is several Data records' worth of the message text.
func report(sid string) []byte {
	return bytes.Repeat(message(sid), 3*wire.MaxDataChunk/len(message(sid))+7)
}

// boardOutcome is what the board made of one session.
type boardOutcome struct {
	conn int // the connection's place in accept order, from 0
	err  error
	sub  *session.Submission
}

// startBoard runs an in-process board that serves sessions until the test
// ends, and reports each one's outcome.
func startBoard(t *testing.T, p *testPKI, allowRC4 bool) (string, <-chan boardOutcome) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan boardOutcome, 8)
	cfg := &session.ServerConfig{Certificate: p.board.chain[0], Key: p.board.key, Root: p.root, AllowRC4: allowRC4,
		Status: func() []byte { return p.status }, Replays: session.NewReplayCache(0)}
	go func() {
		for n := 0; ; n++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				o := boardOutcome{conn: n}
				defer func() { out <- o }()
				defer wire.LingerClose(nc, 2*time.Second, math.MaxInt64)
				wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord, ReadTimeout: testTimeout, WriteTimeout: testTimeout})
				wc.SetDeadline(time.Now().Add(testTimeout))
				sc, err := session.Server(wc, cfg)
				if err != nil {
					o.err = err
					return
				}
				defer sc.Close()
				m, err := sc.ReadRequest()
				if err != nil {
					o.err = err
					return
				}
				req, ok := m.(*wire.SubmitRequest)
				if !ok {
					o.err = fmt.Errorf("got a %v, want a SubmitRequest", m.Type())
					return
				}
				sub, err := sc.ReceiveSubmission(req, labCourse{}, func(*wire.Terms) *wire.Receiver { return &wire.Receiver{MaxSize: 1 << 30} })
				if err != nil {
					o.err = err
					return
				}
				o.sub = sub
				o.err = sc.SendReceipt(&wire.Receipt{
					ID: "000001", SID: sc.SID(), Serial: sc.PeerCertificate().SerialNumber.Bytes(),
					Assignment: sub.Terms.Assignment, Original: sub.Original,
					Name: sub.File.Name, Size: uint64(sub.File.Size), SHA256: sub.File.SHA256,
					Received: uint64(sub.Received.UnixMilli()), Version: 1,
				})
			}()
		}
	}()
	return ln.Addr().String(), out
}

// labCourse serves the lab's assignment alone, with no times.
type labCourse struct{}

func (labCourse) Terms(_ string, req *wire.SubmitRequest, _ time.Time) (*wire.Terms, error) {
	return &wire.Terms{Assignment: req.Assignment, MaxSize: 1 << 30}, nil
}
func (labCourse) History(string, string) ([]wire.HistoryItem, error)           { return nil, nil }
func (labCourse) Assignments(string, time.Time) ([]wire.AssignmentItem, error) { return nil, nil }

// startAdversary runs the adversary in front of upstream and reports each
// connection's Report. It also returns the adversary's log.
func startAdversary(t *testing.T, cfg Config) (string, <-chan *Report, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.Log = zap.New(core)
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); ln.Close() })
	out := make(chan *Report, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { out <- a.Handle(ctx, c) }()
		}
	}()
	return ln.Addr().String(), out, logs
}

// student runs alice's session through addr and submits content; it returns
// the receipt or the error.
func student(t *testing.T, addr string, root *x509.Certificate, suites []uint16, content []byte) (*wire.Receipt, error) {
	t.Helper()
	return studentSeen(t, addr, root, suites, content, 0)
}

// studentSeen is student, for a student who has seen a board status of CRL
// number minCRL.
func studentSeen(t *testing.T, addr string, root *x509.Certificate, suites []uint16, content []byte, minCRL uint64) (*wire.Receipt, error) {
	t.Helper()
	p := pki(t)
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord, ReadTimeout: testTimeout, WriteTimeout: testTimeout})
	wc.SetDeadline(time.Now().Add(testTimeout))
	sc, err := session.Client(wc, &session.ClientConfig{
		SID: testSID, Certificate: p.alice.chain[0], Key: p.alice.key, Root: root, BoardName: "blackboard", Suites: suites,
		MinCRLNumber: minCRL,
	})
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	r, _, err := sc.Submit(session.NewSubmitRequest("lab", "message.txt", int64(len(content)), sha256.Sum256(content)), bytes.NewReader(content), session.SubmitOptions{})
	return r, err
}

// wait returns the next value of ch, or fails the test after testTimeout.
func wait[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("%s did not finish in %s", what, testTimeout)
	}
	panic("unreachable")
}

// codeOf returns the code a session error carries: our own refusal or the peer's.
func codeOf(err error) (code wire.Code, ours bool) {
	var r *wire.Refusal
	if errors.As(err, &r) {
		return r.Code, true
	}
	var e *wire.Error
	if errors.As(err, &e) {
		return e.Code, false
	}
	return 0, false
}

// scenario is one attack run.
type scenario struct {
	attack   string
	withCert bool     // give the adversary mallory's certificate and key
	allowRC4 bool     // the board allows RC4
	suites   []uint16 // the student's offer
	content  []byte
}

// outcome is what each party made of a scenario.
type outcome struct {
	receipt    *wire.Receipt
	studentErr error
	board      []boardOutcome
	rep        *Report
	logs       *observer.ObservedLogs
}

func run(t *testing.T, sc scenario) outcome {
	t.Helper()
	p := pki(t)
	boardAddr, boards := startBoard(t, p, sc.allowRC4)
	cfg := Config{Attack: sc.attack, Upstream: boardAddr, FrameTimeout: testTimeout}
	if sc.withCert {
		cfg.Chain, cfg.Key = p.mallory.chain, p.mallory.key
	}
	advAddr, reports, logs := startAdversary(t, cfg)
	if sc.content == nil {
		sc.content = message(testSID)
	}
	var o outcome
	o.receipt, o.studentErr = student(t, advAddr, p.root, sc.suites, sc.content)
	o.rep = wait(t, "the adversary", reports)
	o.logs = logs
	sessions := 1
	switch sc.attack {
	case ImpersonateBoard:
		sessions = 0
	case Replay:
		sessions = 2
	}
	for range sessions {
		o.board = append(o.board, wait(t, "the board", boards))
	}
	// Outcomes arrive as sessions end, which is not the order they began in
	// (a replayed session can be refused before the recorded one has
	// finished closing); the checks index them by connection.
	slices.SortFunc(o.board, func(a, b boardOutcome) int { return a.conn - b.conn })
	return o
}

// wantRefused checks that the attack was refused with code by the side named.
func (o outcome) wantRefused(t *testing.T, by string, code wire.Code) {
	t.Helper()
	if o.receipt != nil {
		t.Errorf("the student got a receipt")
	}
	for _, b := range o.board {
		if b.sub != nil {
			t.Errorf("the board accepted a submission")
		}
	}
	switch by {
	case "board":
		if len(o.board) == 0 {
			t.Fatal("the board saw no session")
		}
		if got, ours := codeOf(o.board[len(o.board)-1].err); got != code || !ours {
			t.Errorf("board: got %v (%v), want its own refusal %v", got, o.board[len(o.board)-1].err, code)
		}
	case "student":
		if got, ours := codeOf(o.studentErr); got != code || !ours {
			t.Errorf("student: got %v (%v), want its own refusal %v", got, o.studentErr, code)
		}
	}
}

// wantAction checks that the adversary did something containing substr.
func (o outcome) wantAction(t *testing.T, substr string) {
	t.Helper()
	for _, a := range o.rep.Actions {
		if strings.Contains(a, substr) {
			return
		}
	}
	t.Errorf("no action contains %q; actions: %q", substr, o.rep.Actions)
}

func TestEavesdropSeesOnlyCiphertext(t *testing.T) {
	o := run(t, scenario{attack: Eavesdrop})
	if o.studentErr != nil {
		t.Fatalf("the session failed: %v", o.studentErr)
	}
	if o.rep.PlaintextFound != 0 {
		t.Errorf("the adversary found the message text %d times", o.rep.PlaintextFound)
	}
	if o.rep.SID != testSID || o.rep.SubmissionBytes != int64(len(message(testSID))) {
		t.Errorf("metadata: got SID %q and %d submission bytes, want %q and %d (both are visible)",
			o.rep.SID, o.rep.SubmissionBytes, testSID, len(message(testSID)))
	}
	if o.rep.BytesSearched < int64(len(message(testSID))) {
		t.Errorf("searched only %d bytes", o.rep.BytesSearched)
	}
	if o.logs.FilterMessageSnippet("ATTACK eavesdrop: finished").Len() != 1 {
		t.Error("no finished line")
	}
}

// TestSearchFindsPlaintext is the control for the eavesdropper: the same
// search counts the message text and the SID where they are in the clear.
func TestSearchFindsPlaintext(t *testing.T) {
	s := &conn{rep: Report{SID: testSID}}
	rec := append([]byte{byte(wire.TypeData)}, message(testSID)...)
	s.search(&Frame{Dir: ToBoard, Record: 1, Payload: append(rec, make([]byte, tagSize)...)})
	if s.rep.PlaintextFound != 20 {
		t.Errorf("found %d, want 20 (10 texts and 10 SIDs)", s.rep.PlaintextFound)
	}
}

func TestTamper(t *testing.T) {
	o := run(t, scenario{attack: Tamper})
	o.wantRefused(t, "board", wire.CodeBadRecordMAC)
	o.wantAction(t, "flipped bit 3 of byte 17 of the ciphertext of record 2 (Data")
	if code, _ := codeOf(o.studentErr); code != wire.CodeBadRecordMAC {
		t.Errorf("student: got %v, want the board's bad-record-mac", o.studentErr)
	}
}

func TestTruncate(t *testing.T) {
	for name, content := range map[string][]byte{"message": message(testSID), "report": report(testSID)} {
		t.Run(name, func(t *testing.T) {
			o := run(t, scenario{attack: Truncate, content: content})
			o.wantRefused(t, "board", wire.CodeBadRecordMAC)
			o.wantAction(t, "the student's last Data record")
		})
	}
}

func TestReorder(t *testing.T) {
	o := run(t, scenario{attack: Reorder, content: report(testSID)})
	o.wantRefused(t, "board", wire.CodeBadRecordMAC)
	o.wantAction(t, "swapped records 2 and 3 (both Data)")
}

// TestReplay replays a recorded session: the board remembers the hello of a
// student who proved possession, so the replayed hello is refused
// stale-hello in the clear, before the board does any work for it.
func TestReplay(t *testing.T) {
	o := run(t, scenario{attack: Replay})
	if o.studentErr != nil || o.board[0].sub == nil {
		t.Fatalf("the recorded session failed: student %v, board %v", o.studentErr, o.board[0].err)
	}
	if code, ours := codeOf(o.board[1].err); code != wire.CodeStaleHello || !ours {
		t.Errorf("replayed session: board got %v, want its own stale-hello", o.board[1].err)
	}
	if o.board[1].sub != nil || o.rep.ReplayAnswers["Receipt"] != 0 {
		t.Error("the replayed session was accepted")
	}
	if o.rep.ReplayRefusal != wire.CodeStaleHello {
		t.Errorf("the adversary saw the board refuse the replay with %v, want stale-hello in the clear", o.rep.ReplayRefusal)
	}
	o.wantAction(t, "recorded the session")
}

func TestSwapCert(t *testing.T) {
	o := run(t, scenario{attack: SwapCert, withCert: true})
	o.wantRefused(t, "board", wire.CodeSIDMismatch)
	if o.rep.BoardRefusal != wire.CodeSIDMismatch {
		t.Errorf("the adversary saw board refusal %v, want sid-mismatch in the clear", o.rep.BoardRefusal)
	}
}

func TestSwapCertAndSID(t *testing.T) {
	o := run(t, scenario{attack: SwapCertAndSID, withCert: true})
	o.wantRefused(t, "student", wire.CodeBadTranscriptSignature)
	if o.rep.StudentRefusal != wire.CodeBadTranscriptSignature {
		t.Errorf("the adversary saw student refusal %v", o.rep.StudentRefusal)
	}
	if code, _ := codeOf(o.board[0].err); code != wire.CodeBadTranscriptSignature {
		t.Errorf("board: got %v, want the student's bad-transcript-signature", o.board[0].err)
	}
}

// TestDowngrade strips AES from the offer: the student's signature over her
// hello covers it, so the board refuses the changed hello before it chooses
// a suite.
func TestDowngrade(t *testing.T) {
	all := []uint16{session.SuiteAES256GCM, session.SuiteAES256CTRHMACSHA256, session.SuiteRC4HMACSHA256}
	o := run(t, scenario{attack: Downgrade, allowRC4: true, suites: all})
	o.wantRefused(t, "board", wire.CodeBadHelloSignature)
	o.wantAction(t, "stripped the AES suites from the student's offer [aes-256-gcm,aes-256-ctr-hmac-sha256,rc4-hmac-sha256], leaving [rc4-hmac-sha256]")
	if o.rep.BoardRefusal != wire.CodeBadHelloSignature {
		t.Errorf("the adversary saw board refusal %v, want bad-hello-signature in the clear", o.rep.BoardRefusal)
	}
}

func TestImpersonateBoard(t *testing.T) {
	t.Run("self-signed", func(t *testing.T) {
		o := run(t, scenario{attack: ImpersonateBoard})
		o.wantRefused(t, "student", wire.CodeUnknownCA)
		if o.rep.PlaintextRead != 0 || o.rep.StudentRefusal != wire.CodeUnknownCA {
			t.Errorf("adversary: read %d bytes, saw refusal %v", o.rep.PlaintextRead, o.rep.StudentRefusal)
		}
	})
	t.Run("a student certificate of the same CA", func(t *testing.T) {
		o := run(t, scenario{attack: ImpersonateBoard, withCert: true})
		o.wantRefused(t, "student", wire.CodeWrongUsage)
	})
}

// TestImpersonatorReadsATrustingStudent is the control of impersonate-board,
// and of this package's implementation of the key schedule, the status and
// records: a student whose root is the impostor's own (a rogue root whose key
// is the impostor's, so that its status verifies) sends its submission, and
// the adversary reads all of it.
func TestImpersonatorReadsATrustingStudent(t *testing.T) {
	p := pki(t)
	core, _ := observer.New(zapcore.InfoLevel)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rogueTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Rogue Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, rogueTmpl, rogueTmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	rogue, _ := x509.ParseCertificate(der)
	der, err = x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "blackboard"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		rogue, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	impostor, _ := x509.ParseCertificate(der)
	a, err := New(Config{Attack: ImpersonateBoard, Chain: []*x509.Certificate{impostor}, Key: key, Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reports := make(chan *Report, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			reports <- a.Handle(context.Background(), c)
		}
	}()
	content := report(testSID)
	_, err = student(t, ln.Addr().String(), rogue, nil, content)
	if err == nil {
		t.Error("the student got a receipt from the impostor")
	}
	rep := wait(t, "the adversary", reports)
	if rep.PlaintextRead != int64(len(content)) {
		t.Fatalf("the impostor read %d bytes of %d", rep.PlaintextRead, len(content))
	}
	if !strings.Contains(strings.Join(rep.Actions, "\n"), `READ the student's whole submission`) {
		t.Errorf("actions: %q", rep.Actions)
	}
	_ = p
}

// TestImpersonateWithAStolenBoardIdentity plays the board with its stolen
// key, certificate and status (--cert, --key, --status): a student who has
// seen a status of a higher CRL number refuses it stale-status; one who has
// not is read — the window that the status's short validity bounds.
func TestImpersonateWithAStolenBoardIdentity(t *testing.T) {
	p := pki(t)
	addr, reports, _ := startAdversary(t, Config{Attack: ImpersonateBoard, Chain: p.board.chain, Key: p.board.key, Status: p.status})
	content := message(testSID)
	_, err := studentSeen(t, addr, p.root, nil, content, 2)
	if code, ours := codeOf(err); code != wire.CodeStaleStatus || !ours {
		t.Errorf("a student who has seen CRL 2: got %v, want her stale-status", err)
	}
	rep := wait(t, "the adversary", reports)
	if rep.PlaintextRead != 0 {
		t.Errorf("the impostor read %d bytes of a student who refused it", rep.PlaintextRead)
	}
	acts := strings.Join(rep.Actions, "\n")
	for _, want := range []string{"a board certificate of the course CA (CN \"blackboard\"", "stapling the board status it was given (good, CRL number 1"} {
		if !strings.Contains(acts, want) {
			t.Errorf("actions %q lack %q", acts, want)
		}
	}
	// The control: a student who has seen nothing newer trusts the stolen
	// identity until the status expires.
	if _, err := studentSeen(t, addr, p.root, nil, content, 1); err == nil {
		t.Error("the student got a receipt from the impostor")
	}
	if rep := wait(t, "the adversary", reports); rep.PlaintextRead != int64(len(content)) {
		t.Errorf("the impostor read %d bytes of %d from a student who trusted it", rep.PlaintextRead, len(content))
	}
}

func TestStealSessionKey(t *testing.T) {
	o := run(t, scenario{attack: StealSessionKey, withCert: true})
	if o.studentErr != nil {
		t.Fatalf("the session failed: %v", o.studentErr)
	}
	if o.rep.KeysRecovered || o.rep.KeyCandidates < 100 {
		t.Errorf("recovered %v after %d candidates", o.rep.KeysRecovered, o.rep.KeyCandidates)
	}
	o.wantAction(t, "tried to decrypt the session key (encrypted_key) with its own private key (mallory's")
	o.wantAction(t, "none verified")
}

// TestSearchKeysFindsTheRightKey is the control for steal-session-key: given
// the real secrets among its guesses, the same search verifies them.
func TestSearchKeysFindsTheRightKey(t *testing.T) {
	var v keyView
	rand.Read(v.clientRandom[:])
	rand.Read(v.serverRandom[:])
	rand.Read(v.th[:])
	sk, pq := make([]byte, 32), make([]byte, 32)
	rand.Read(sk)
	rand.Read(pq)
	k, err := deriveKeys(append(append([]byte(nil), sk...), pq...), v.clientRandom, v.serverRandom, v.th, "c2s")
	if err != nil {
		t.Fatal(err)
	}
	c, err := newRecordCodec(session.SuiteAES256CTRHMACSHA256, k)
	if err != nil {
		t.Fatal(err)
	}
	v.firstRecord = c.seal(mustMarshal(&wire.FileHeader{Name: "message.txt", Size: 360}))
	wrong := []guess{{"zero", make([]byte, 32)}, {"client random", v.clientRandom[:]}}
	if _, found := searchKeys(v, wrong, wrong); found != "" {
		t.Fatalf("wrong guesses verified: %s", found)
	}
	tried, found := searchKeys(v, append(wrong, guess{"the session key", sk}), append(wrong, guess{"the pq secret", pq}))
	if found != "the session key with the pq secret" {
		t.Errorf("found %q after %d tries, want the real keys", found, tried)
	}
}

func TestNewChecksConfig(t *testing.T) {
	p := pki(t)
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Attack: "sniff", Upstream: "127.0.0.1:1"}, `unknown attack "sniff"`},
		{Config{Attack: SwapCert, Upstream: "127.0.0.1:1"}, "needs the adversary's own certificate"},
		{Config{Attack: Tamper, Upstream: "board"}, "not host:port"},
		{Config{Attack: Tamper, Upstream: "127.0.0.1:1", Chain: p.mallory.chain}, "together"},
		{Config{Attack: Tamper, Upstream: "127.0.0.1:1", Status: p.status}, "applies to impersonate-board only"},
	} {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v): got %v, want %q", tt.cfg.Attack, err, tt.want)
		}
	}
	if _, err := New(Config{Attack: ImpersonateBoard}); err != nil {
		t.Errorf("impersonate-board needs no upstream: %v", err)
	}
	if got := fmt.Sprint(Attacks()); !strings.Contains(got, "steal-session-key") {
		t.Errorf("Attacks() = %s", got)
	}
}
