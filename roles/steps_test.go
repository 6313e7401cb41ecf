package roles

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/board"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/session"
	"pkiboard/wire"
)

// stepPKI is a root, the board's certificate and a student's, for running the
// board's handler and the student's submit against each other.
type stepPKI struct {
	root    *x509.Certificate
	rootKey crypto.Signer
	board   *x509.Certificate
	boardK  crypto.Signer
	student *studentID
}

const stepSID = "1155000001"

func newStepPKI(t *testing.T) *stepPKI {
	t.Helper()
	p := &stepPKI{rootKey: testcert.Key(t), boardK: testcert.Key(t)}
	p.root = testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Step Test Root"}, IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, p.rootKey.Public(), p.rootKey)
	p.board = testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "blackboard"}, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, p.root, p.boardK.Public(), p.rootKey)
	p.student = p.issueStudent(t, p.root, p.rootKey)
	return p
}

// issueStudent issues stepSID a certificate under root.
func (p *stepPKI) issueStudent(t *testing.T, root *x509.Certificate, rootKey crypto.Signer) *studentID {
	t.Helper()
	k := testcert.Key(t)
	cert := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: stepSID}, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, root, k.Public(), rootKey)
	return &studentID{key: k, cert: cert, root: p.root}
}

// stepRun is one session between the board's handler and the student's
// submit, with what each logged.
type stepRun struct {
	board, student *observer.ObservedLogs
	sub            *submitted
	err            error    // the student's
	hellos         [][]byte // the ClientHello of each connection, as the board read it
}

// status returns a status of the board's certificate signed by the root:
// good or revoked, of CRL number n, valid from a minute ago for an hour.
func (p *stepPKI) status(t *testing.T, n uint64, revoked bool) []byte {
	t.Helper()
	now := time.Now()
	s := &wire.BoardStatus{Serial: p.board.SerialNumber.Bytes(), CertSHA256: sha256.Sum256(p.board.Raw), CRLNumber: n,
		Revoked: revoked, ThisUpdate: uint64(now.Add(-time.Minute).Unix()), NextUpdate: uint64(now.Add(time.Hour).Unix())}
	msg, err := s.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if s.Signature, err = keys.Sign(p.rootKey, rand.Reader, msg); err != nil {
		t.Fatal(err)
	}
	data, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// stepOptions change runSteps' session.
type stepOptions struct {
	status    []byte                // the board's status; a good one of CRL number 1 if nil
	dataDir   string                // the student's data directory; a new one if ""
	busyFirst bool                  // the board answers the first connection busy, as at max_conns
	boardDir  string                // the board's data directory; a new one if ""
	mods      []func(*boardHandler) // changes to the board's handler, applied last
}

// runSteps runs one board session against one student submission.
func runSteps(t *testing.T, p *stepPKI, id *studentID, suite uint16, allowRC4 bool, boardName string, mods ...func(*boardHandler)) stepRun {
	t.Helper()
	return runStepsWith(t, p, id, suite, allowRC4, boardName, stepOptions{mods: mods})
}

// runStepsWith is runSteps with options. The student goes through retryBusy,
// as RunStudent does.
func runStepsWith(t *testing.T, p *stepPKI, id *studentID, suite uint16, allowRC4 bool, boardName string, o stepOptions) stepRun {
	t.Helper()
	if o.boardDir == "" {
		o.boardDir = t.TempDir()
	}
	st, err := board.Open(o.boardDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if o.status == nil {
		o.status = p.status(t, 1, false)
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	boardCore, boardLogs := observer.New(zapcore.InfoLevel)
	studentCore, studentLogs := observer.New(zapcore.InfoLevel)
	h := &boardHandler{
		store:   st,
		limits:  config.Default().Board.Limits,
		uploads: board.UploadLimits{MaxSize: 1 << 20},
		log:     zap.New(boardCore),
	}
	h.session.Store(&session.ServerConfig{
		Certificate: p.board, Key: p.boardK, Root: p.root, AllowRC4: allowRC4,
		Status: func() []byte { return o.status }, Replays: session.NewReplayCache(0),
	})
	for _, mod := range o.mods {
		mod(h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	var hellos [][]byte // the first frame of each connection
	go func() {
		defer close(done)
		if o.busyFirst {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wc := wire.NewConn(c, wire.Options{ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
			if p, err := wc.ReadFrame(); err == nil {
				hellos = append(hellos, bytes.Clone(p))
			}
			wc.WriteMessage(&wire.Error{Code: wire.CodeBusy, Text: "the board is at its connection limit; try again shortly"}) //nolint:errcheck // closing
			c.Close()
		}
		c, err := ln.Accept()
		if err != nil {
			return
		}
		rc := &recordingConn{Conn: c}
		defer rc.Close()
		h.handle(context.Background(), rc, testTracked(t, rc))
		if p, err := wire.ReadFrame(bytes.NewReader(rc.read.Bytes()), 1<<20, nil); err == nil {
			hellos = append(hellos, p)
		}
	}()

	s := &student{
		cfg:     &config.StudentConfig{BoardAddr: ln.Addr().String(), BoardName: boardName, Timeout: config.Duration(10 * time.Second)},
		log:     zap.New(studentCore),
		out:     &lockedWriter{w: io.Discard},
		content: &content{name: messageFileName},
		suites:  []uint16{suite},
		seen:    newCRLSeen(o.dataDir),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sub *submitted
	err = retryBusy(ctx, s.log, stepSID, "the board", func() error {
		var err error
		sub, err = s.submit(ctx, ctx, stepSID, id)
		return err
	})
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the board's handler did not return")
	}
	return stepRun{board: boardLogs, student: studentLogs, sub: sub, err: err, hellos: hellos}
}

// recordingConn records what is read from it.
type recordingConn struct {
	net.Conn
	read bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Write(p[:n])
	return n, err
}

// wantLine checks that logs hold exactly one line msg, with the fields want
// (and perhaps others), and returns its position.
func wantLine(t *testing.T, side string, logs *observer.ObservedLogs, msg string, want map[string]any) int {
	t.Helper()
	at := -1
	for i, e := range logs.All() {
		if e.Message != msg {
			continue
		}
		if at >= 0 {
			t.Errorf("%s logged %q twice", side, msg)
		}
		at = i
		got := e.ContextMap()
		for k, v := range want {
			if fmt.Sprint(got[k]) != fmt.Sprint(v) {
				t.Errorf("%s: %q has %s = %v, want %v", side, msg, k, got[k], v)
			}
		}
	}
	if at < 0 {
		t.Errorf("%s did not log %q; it logged:\n%s", side, msg, messages(logs))
	}
	return at
}

func messages(logs *observer.ObservedLogs) string {
	var s string
	for _, e := range logs.All() {
		s += fmt.Sprintf("  %s %s %v\n", e.Level, e.Message, e.ContextMap())
	}
	return s
}

// TestSessionSteps checks the STEP lines of a session, which the roles log
// from the facts package session returns: the board's STEP 3 and STEP 4 (with
// the SID, the certificate's serial and key, the suite and the key transport),
// in that order, then STEP 6; the student's STEP 5; the RC4 warning exactly
// when the session uses RC4.
func TestSessionSteps(t *testing.T) {
	p := newStepPKI(t)
	leaf := p.student.cert
	for _, suite := range []uint16{session.SuiteAES256CTRHMACSHA256, session.SuiteRC4HMACSHA256} {
		t.Run(session.SuiteName(suite), func(t *testing.T) {
			r := runSteps(t, p, p.student, suite, true, "blackboard")
			if r.err != nil {
				t.Fatal(r.err)
			}
			name := session.SuiteName(suite)
			s3 := wantLine(t, "board", r.board, "STEP 3: student certificate checked; hello signed with its key", map[string]any{
				"sid": stepSID, "serial": keys.SerialHex(leaf.SerialNumber), "key": keys.Describe(leaf.PublicKey), "suite": name, "step": 3})
			s4 := wantLine(t, "board", r.board, "STEP 4: session key sent; session established", map[string]any{
				"sid": stepSID, "key_transport": "hpke-p256", "suite": name, "step": 4})
			s6 := wantLine(t, "board", r.board, "STEP 6: MAC verified, submission stored", map[string]any{
				"sid": stepSID, "id": r.sub.receipt.ID, "name": messageFileName, "suite": name, "step": 6})
			if !(s3 < s4 && s4 < s6) {
				t.Errorf("the board logged STEP 3 at %d, STEP 4 at %d, STEP 6 at %d: out of order", s3, s4, s6)
			}
			wantLine(t, "student", r.student, "STEP 5: board verified; session key recovered", map[string]any{
				"sid": stepSID, "board": "blackboard", "suite": name, "step": 5})
			warned := r.board.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("RC4 is broken").FilterField(zap.String("sid", stepSID)).Len()
			if want := map[bool]int{true: 1, false: 0}[suite == session.SuiteRC4HMACSHA256]; warned != want {
				t.Errorf("RC4 warnings: got %d, want %d", warned, want)
			}
			if n := r.board.FilterMessageSnippet("session refused").Len() + r.student.FilterMessageSnippet("session refused").Len(); n != 0 {
				t.Errorf("a session that succeeded logged %d refusals", n)
			}
		})
	}
}

// TestRefusedSessionSteps checks the lines of a refused session: the side
// that refuses logs "STEP n: session refused" with the SID, the code and the
// reason, at the step it refused in.
func TestRefusedSessionSteps(t *testing.T) {
	p := newStepPKI(t)

	t.Run("board refuses at step 3", func(t *testing.T) {
		otherKey := testcert.Key(t)
		other := testcert.Issue(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "Some Other Root"}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign,
		}, nil, otherKey.Public(), otherKey)
		r := runSteps(t, p, p.issueStudent(t, other, otherKey), session.SuiteAES256CTRHMACSHA256, false, "blackboard")
		var peer *wire.Error
		if !errors.As(r.err, &peer) || peer.Code != wire.CodeUnknownCA {
			t.Fatalf("student: got %v, want the board's unknown-ca", r.err)
		}
		wantLine(t, "board", r.board, "STEP 3: session refused", map[string]any{"sid": stepSID, "code": "unknown-ca", "step": 3})
		if n := r.board.FilterMessageSnippet("STEP 3: student certificate checked").Len(); n != 0 {
			t.Errorf("the board logged its check of a certificate it refused")
		}
		if n := r.student.FilterMessageSnippet("STEP 5").Len(); n != 0 {
			t.Errorf("the student logged STEP 5 for a session the board refused")
		}
	})

	t.Run("student refuses at step 5", func(t *testing.T) {
		r := runSteps(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "otherboard")
		var refusal *wire.Refusal
		if !errors.As(r.err, &refusal) || refusal.Code != wire.CodeNameMismatch {
			t.Fatalf("student: got %v, want its own name-mismatch", r.err)
		}
		wantLine(t, "student", r.student, "STEP 5: board not accepted; session refused", map[string]any{
			"sid": stepSID, "code": "name-mismatch", "reason": refusal.Text, "step": 5})
		if n := r.student.FilterMessageSnippet("STEP 5: board verified").Len(); n != 0 {
			t.Errorf("the student logged a board it refused as verified")
		}
	})

	t.Run("board fails at step 4", func(t *testing.T) {
		// A refusal of step 4 cannot be provoked from outside; logHandshake is
		// given what session.Server returns then.
		core, logs := observer.New(zapcore.InfoLevel)
		leaf := p.student.cert
		refusal := wire.Refusef(wire.CodeBadKeyShare, "your X-Wing public key cannot be used")
		logHandshake(zap.New(core), nil, &session.HandshakeError{
			Step: 4, SID: stepSID, Proven: true, Student: leaf, Suite: session.SuiteRC4HMACSHA256, Err: fmt.Errorf("session: %w", refusal)})
		s3 := wantLine(t, "board", logs, "STEP 3: student certificate checked; hello signed with its key", map[string]any{
			"sid": stepSID, "serial": keys.SerialHex(leaf.SerialNumber), "suite": "rc4-hmac-sha256"})
		warn := wantLine(t, "board", logs, "RC4 is broken; this session uses it because board.allow_rc4 = true and the student offered it", nil)
		s4 := wantLine(t, "board", logs, "STEP 4: session refused", map[string]any{
			"sid": stepSID, "code": "bad-key-share", "reason": refusal.Text, "step": 4})
		if !(s3 < warn && warn < s4) {
			t.Errorf("logged STEP 3 at %d, the RC4 warning at %d, STEP 4 at %d: out of order", s3, warn, s4)
		}
	})

	t.Run("refused before the hello", func(t *testing.T) {
		core, logs := observer.New(zapcore.InfoLevel)
		refusal := wire.Refusef(wire.CodeBadVersion, "update pkiboard")
		logHandshake(zap.New(core), nil, &session.HandshakeError{Step: 3, Err: fmt.Errorf("session: %w", refusal)})
		wantLine(t, "board", logs, "STEP 3: session refused", map[string]any{"code": "bad-version", "step": 3})
		if _, ok := logs.All()[0].ContextMap()["sid"]; ok {
			t.Error("a refusal before the hello was read names a SID")
		}
	})
}

// TestMessageLoggedOnlyWhereAsked checks board.log_content: the board's STEP 6
// line carries the message's text only when the config asks for it.
func TestMessageLoggedOnlyWhereAsked(t *testing.T) {
	p := newStepPKI(t)
	for _, logContent := range []bool{false, true} {
		t.Run(fmt.Sprint(logContent), func(t *testing.T) {
			r := runSteps(t, p, p.student, session.SuiteAES256CTRHMACSHA256, false, "blackboard",
				func(h *boardHandler) { h.logContent = logContent })
			if r.err != nil {
				t.Fatal(r.err)
			}
			lines := r.board.FilterMessageSnippet("STEP 6").All()
			if len(lines) != 1 {
				t.Fatalf("%d STEP 6 lines", len(lines))
			}
			text, ok := lines[0].ContextMap()["message"]
			if ok != logContent {
				t.Errorf("log_content %v: the STEP 6 line has a message field: %v (%q)", logContent, ok, text)
			}
			if s, _ := text.(string); logContent && s == "" {
				t.Errorf("the message logged is %q", text)
			}
		})
	}
}
