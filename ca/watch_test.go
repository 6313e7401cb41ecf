package ca

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// issueCert issues a certificate for a fresh P-256 key with the given profile
// and name, and stores it as Enroll would, without an enrollment: the watch
// tests need a board certificate, not the enrollment's rules.
func (tc *testCA) issueCert(t testing.TB, profile uint8, sid string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := newKey(t)
	cert, err := tc.issue(key.Public(), Request{Profile: profile, SID: sid}, tc.now())
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.db.Update(func(tx *sql.Tx) error {
		return insertCert(tx, cert, Request{Profile: profile, SID: sid}, "", tc.now())
	}); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// keepOpenConn is a connection that records ServeConn's KeepOpen.
type keepOpenConn struct {
	net.Conn
	kept atomic.Bool
}

func (c *keepOpenConn) KeepOpen() { c.kept.Store(true) }

// watchServer serves tc on 127.0.0.1 until the test ends or stop is called.
type watchServer struct {
	addr   string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []*keepOpenConn
}

func serveWatches(t *testing.T, tc *testCA) *watchServer {
	t.Helper()
	srv := &Server{
		Authority:        tc.Authority,
		Wire:             wire.Options{MaxFrame: 64 << 10, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second},
		HandshakeTimeout: 5 * time.Second,
		IdleTimeout:      5 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchServer{addr: ln.Addr().String(), cancel: cancel}
	ws.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			kc := &keepOpenConn{Conn: c}
			ws.mu.Lock()
			ws.conns = append(ws.conns, kc)
			ws.mu.Unlock()
			ws.wg.Go(func() {
				defer c.Close()
				srv.ServeConn(ctx, kc, nil)
			})
		}
	})
	context.AfterFunc(ctx, func() { ln.Close() })
	t.Cleanup(ws.stop)
	return ws
}

// stop cancels the server's context and waits for every connection to end.
func (ws *watchServer) stop() {
	ws.cancel()
	ws.wg.Wait()
}

// kept reports whether connection i was told KeepOpen.
func (ws *watchServer) kept(i int) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.conns[i].kept.Load()
}

// watcher is the board's side of a watch, as a test drives it.
type watcher struct {
	wc   *wire.Conn
	cert *x509.Certificate
}

// watchOpts changes what a test board sends.
type watchOpts struct {
	version uint16
	der     []byte        // the certificate sent, if not the board's own
	signer  crypto.Signer // the key that signs the proof, if not the board's own
	nonce   func([wire.NonceLen]byte) [wire.NonceLen]byte
}

// startWatch opens a watch and returns it once the first StatusUpdate has
// arrived, or the CA's refusal.
func startWatch(t *testing.T, addr string, cert *x509.Certificate, key crypto.Signer, o watchOpts) (*watcher, *wire.StatusUpdate, error) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	wc := wire.NewConn(nc, wire.Options{MaxFrame: wire.MaxCRLLen + 1<<10, ReadTimeout: 10 * time.Second, WriteTimeout: 5 * time.Second})
	if o.version == 0 {
		o.version = wire.ProtocolVersion
	}
	der := cert.Raw
	if o.der != nil {
		der = o.der
	}
	if o.signer == nil {
		o.signer = key
	}
	if err := wc.WriteMessage(&wire.WatchRequest{Version: o.version, Certificate: der}); err != nil {
		t.Fatal(err)
	}
	ch, err := wire.Expect[*wire.WatchChallenge](wc.ReadMessage())
	if err != nil {
		return nil, nil, err
	}
	nonce := ch.Nonce
	if o.nonce != nil {
		nonce = o.nonce(nonce)
	}
	sig, err := keys.Sign(o.signer, nil, wire.WatchSignedBytes(nonce, der))
	if err != nil {
		t.Fatal(err)
	}
	if err := wc.WriteMessage(&wire.WatchProof{Signature: sig}); err != nil {
		t.Fatal(err)
	}
	w := &watcher{wc: wc, cert: cert}
	up, err := w.next()
	return w, up, err
}

// next reads the next StatusUpdate.
func (w *watcher) next() (*wire.StatusUpdate, error) {
	return wire.Expect[*wire.StatusUpdate](w.wc.ReadMessage())
}

// ack acknowledges a CRL number.
func (w *watcher) ack(t *testing.T, n uint64) {
	t.Helper()
	if err := w.wc.WriteMessage(&wire.StatusAck{CRLNumber: n}); err != nil {
		t.Fatal(err)
	}
}

// checkUpdate checks a StatusUpdate: its CRL is the CA's current one, and its
// status is signed by the root, names cert and that CRL. It returns both.
func checkUpdate(t *testing.T, tc *testCA, cert *x509.Certificate, up *wire.StatusUpdate) (*x509.RevocationList, *wire.BoardStatus) {
	t.Helper()
	crl, err := ParseCRL(up.CRL, tc.Root())
	if err != nil {
		t.Fatalf("pushed CRL: %v", err)
	}
	st := checkStatus(t, tc, cert, up.Status)
	if st.CRLNumber != crl.Number.Uint64() {
		t.Errorf("status names CRL %d, the update carries CRL %v", st.CRLNumber, crl.Number)
	}
	return crl, st
}

// checkStatus decodes a status and checks that the root signed it and that it
// names cert.
func checkStatus(t *testing.T, tc *testCA, cert *x509.Certificate, enc []byte) *wire.BoardStatus {
	t.Helper()
	st, err := wire.ParseBoardStatus(enc)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	msg, err := st.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Verify(tc.Root().PublicKey, msg, st.Signature); err != nil {
		t.Errorf("status signature: %v", err)
	}
	if new(big.Int).SetBytes(st.Serial).Cmp(cert.SerialNumber) != 0 || st.CertSHA256 != sha256.Sum256(cert.Raw) {
		t.Errorf("status names serial %x, another certificate than %s", st.Serial, keys.SerialHex(cert.SerialNumber))
	}
	return st
}

func TestBoardStatus(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.StatusValidity = time.Hour })
	board, _ := tc.issueCert(t, wire.ProfileBoard, testBoard)
	enc, err := tc.BoardStatus(board)
	if err != nil {
		t.Fatal(err)
	}
	st := checkStatus(t, tc, board, enc)
	this := t0.Add(-time.Minute)
	if st.Revoked || st.CRLNumber != tc.CRLNumber() || st.ThisUpdate != uint64(this.Unix()) ||
		st.NextUpdate != uint64(this.Add(time.Hour+time.Minute).Unix()) {
		t.Errorf("status: revoked %v crl %d (CA's %d) this %d next %d; want good, this = now - 1m, next = this + 1h + 1m",
			st.Revoked, st.CRLNumber, tc.CRLNumber(), st.ThisUpdate, st.NextUpdate)
	}

	// Cached: the same bytes until half-way from its signing to next_update
	// (30m after t0), new ones from then on.
	tc.clock.Add(29*time.Minute + 59*time.Second)
	if again, _ := tc.BoardStatus(board); !slices.Equal(again, enc) {
		t.Error("a second status signed before the first was half-way through")
	}
	tc.clock.Add(time.Second)
	half, _ := tc.BoardStatus(board)
	if slices.Equal(half, enc) {
		t.Error("no new status once the first was half-way through")
	}
	if st := checkStatus(t, tc, board, half); st.ThisUpdate != uint64(tc.clock.Now().Add(-time.Minute).Unix()) {
		t.Errorf("the new status's this_update is %d, not a minute before now", st.ThisUpdate)
	}

	// A new CRL: a new status naming it.
	student, _ := tc.issueCert(t, wire.ProfileStudent, testSID)
	if _, err := tc.Revoke(t.Context(), student.SerialNumber, ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	after, _ := tc.BoardStatus(board)
	if st := checkStatus(t, tc, board, after); slices.Equal(after, half) || st.CRLNumber != tc.CRLNumber() || st.Revoked {
		t.Errorf("after a new CRL: status for CRL %d (CA's %d), revoked %v; want a new good one", st.CRLNumber, tc.CRLNumber(), st.Revoked)
	}

	// The board's own revocation.
	if _, err := tc.Revoke(t.Context(), board.SerialNumber, ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	revoked, _ := tc.BoardStatus(board)
	if st := checkStatus(t, tc, board, revoked); !st.Revoked || st.CRLNumber != tc.CRLNumber() {
		t.Errorf("after the board's revocation: revoked %v, CRL %d (CA's %d)", st.Revoked, st.CRLNumber, tc.CRLNumber())
	}

	// Certificates that get no status.
	other := newCA(t, nil)
	stranger, _ := other.issueCert(t, wire.ProfileBoard, testBoard)
	for name, cert := range map[string]*x509.Certificate{"a student's": student, "another CA's": stranger} {
		if _, err := tc.BoardStatus(cert); err == nil {
			t.Errorf("%s certificate got a status", name)
		}
	}
	tc.clock.Add(tc.opts.CertValidity + time.Hour)
	if _, err := tc.BoardStatus(board); err == nil {
		t.Error("an expired board certificate got a status")
	}
}

func TestWatchPushesEachCRL(t *testing.T) {
	tc := newCA(t, nil)
	ws := serveWatches(t, tc)
	board, key := tc.issueCert(t, wire.ProfileBoard, testBoard)
	student, _ := tc.issueCert(t, wire.ProfileStudent, testSID)

	w, up, err := startWatch(t, ws.addr, board, key, watchOpts{})
	if err != nil {
		t.Fatal(err)
	}
	crl, st := checkUpdate(t, tc, board, up)
	if crl.Number.Uint64() != tc.CRLNumber() || st.Revoked {
		t.Errorf("first push: CRL %v (CA's %d), revoked %v", crl.Number, tc.CRLNumber(), st.Revoked)
	}
	w.ack(t, crl.Number.Uint64())
	if !ws.kept(0) {
		t.Error("the watch's connection was not told KeepOpen")
	}
	if n := tc.Watching(); n != 1 {
		t.Errorf("Watching() = %d want 1", n)
	}

	// Revoke returns once the board acknowledged the new CRL, and says so.
	type result struct {
		r   Revocation
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := tc.Revoke(context.Background(), student.SerialNumber, ReasonKeyCompromise)
		done <- result{r, err}
	}()
	up, err = w.next()
	if err != nil {
		t.Fatal(err)
	}
	crl2, st2 := checkUpdate(t, tc, board, up)
	if crl2.Number.Cmp(crl.Number) <= 0 || len(crl2.RevokedCertificateEntries) != 1 || crl2.RevokedCertificateEntries[0].SerialNumber.Cmp(student.SerialNumber) != 0 {
		t.Fatalf("second push: CRL %v with %d entries", crl2.Number, len(crl2.RevokedCertificateEntries))
	}
	if st2.CRLNumber != crl2.Number.Uint64() {
		t.Errorf("second status names CRL %d", st2.CRLNumber)
	}
	w.ack(t, crl2.Number.Uint64())
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if want := (Publication{Number: crl2.Number.Uint64(), Watching: 1, Installed: 1}); res.r.Revoked != 1 || res.r.CRL != want {
		t.Errorf("Revoke: %+v want 1 revoked, %+v", res.r, want)
	}
}

// TestRevokeWaitsBounded checks that Revoke reports a board that does not
// acknowledge instead of waiting for it.
func TestRevokeWaitsBounded(t *testing.T) {
	tc := newCA(t, nil)
	tc.ackWait = 50 * time.Millisecond
	ws := serveWatches(t, tc)
	board, key := tc.issueCert(t, wire.ProfileBoard, testBoard)
	student, _ := tc.issueCert(t, wire.ProfileStudent, testSID)
	w, up, err := startWatch(t, ws.addr, board, key, watchOpts{})
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := checkUpdate(t, tc, board, up)
	w.ack(t, crl.Number.Uint64())
	res, err := tc.Revoke(t.Context(), student.SerialNumber, ReasonSuperseded)
	if err != nil {
		t.Fatal(err)
	}
	if res.CRL.Watching != 1 || res.CRL.Installed != 0 {
		t.Errorf("a board that does not acknowledge: %d of %d installed, want 0 of 1", res.CRL.Installed, res.CRL.Watching)
	}
	if _, err := w.next(); err != nil { // the push came all the same
		t.Fatal(err)
	}
}

func TestWatchRefusals(t *testing.T) {
	tc := newCA(t, nil)
	ws := serveWatches(t, tc)
	board, key := tc.issueCert(t, wire.ProfileBoard, testBoard)
	student, skey := tc.issueCert(t, wire.ProfileStudent, testSID)
	revoked, rkey := tc.issueCert(t, wire.ProfileBoard, testBoard)
	if _, err := tc.Revoke(t.Context(), revoked.SerialNumber, ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	other := newCA(t, nil)
	stranger, xkey := other.issueCert(t, wire.ProfileBoard, testBoard)
	// A certificate with a serial of ours but other bytes.
	forged := slices.Clone(board.Raw)
	forged[len(forged)-3] ^= 1

	tests := []struct {
		name string
		cert *x509.Certificate
		key  crypto.Signer
		o    watchOpts
		want wire.Code
	}{
		{"version 1", board, key, watchOpts{version: 1}, wire.CodeBadVersion},
		{"not a certificate", board, key, watchOpts{der: []byte("not DER")}, wire.CodeBoardNotAuthorized},
		{"a student certificate", student, skey, watchOpts{}, wire.CodeBoardNotAuthorized},
		{"another CA's board certificate", stranger, xkey, watchOpts{}, wire.CodeBoardNotAuthorized},
		{"our serial, other bytes", board, key, watchOpts{der: forged}, wire.CodeBoardNotAuthorized},
		{"a revoked board certificate", revoked, rkey, watchOpts{}, wire.CodeBoardNotAuthorized},
		{"proof by another key", board, key, watchOpts{signer: skey}, wire.CodeBoardNotAuthorized},
		{"proof over another nonce", board, key, watchOpts{nonce: func(n [wire.NonceLen]byte) [wire.NonceLen]byte { n[0] ^= 1; return n }}, wire.CodeBoardNotAuthorized},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := startWatch(t, ws.addr, tt.cert, tt.key, tt.o)
			var peer *wire.Error
			if !errors.As(err, &peer) || peer.Code != tt.want {
				t.Fatalf("got %v, want the CA's %v", err, tt.want)
			}
			if tc.Watching() != 0 {
				t.Error("a refused watch is counted as watching")
			}
			if ws.kept(i) {
				t.Error("a refused watch's connection was told KeepOpen")
			}
		})
	}

	// An expired board certificate.
	tc.clock.Add(tc.opts.CertValidity + time.Minute)
	if _, _, err := startWatch(t, ws.addr, board, key, watchOpts{}); wire.CodeOf(err) != wire.CodeBoardNotAuthorized {
		t.Errorf("an expired board certificate: got %v", err)
	}
}

func TestWatchReplacedByNewer(t *testing.T) {
	tc := newCA(t, nil)
	ws := serveWatches(t, tc)
	board, key := tc.issueCert(t, wire.ProfileBoard, testBoard)
	first, _, err := startWatch(t, ws.addr, board, key, watchOpts{})
	if err != nil {
		t.Fatal(err)
	}
	second, up, err := startWatch(t, ws.addr, board, key, watchOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.next(); !errors.Is(err, io.EOF) && !wire.PeerGone(err) {
		t.Errorf("the replaced watch: got %v, want the CA to close it", err)
	}
	crl, _ := checkUpdate(t, tc, board, up)
	second.ack(t, crl.Number.Uint64())
	if n := tc.Watching(); n != 1 {
		t.Errorf("Watching() = %d want 1", n)
	}
}

// TestWatchRefreshesStatus checks the push at the status's half-life, on the
// injected clock.
func TestWatchRefreshesStatus(t *testing.T) {
	tc := newCA(t, nil)
	waits := make(chan time.Duration, 4)
	fire := make(chan time.Time)
	tc.after = func(d time.Duration) <-chan time.Time {
		waits <- d
		return fire
	}
	ws := serveWatches(t, tc)
	board, key := tc.issueCert(t, wire.ProfileBoard, testBoard)
	w, up, err := startWatch(t, ws.addr, board, key, watchOpts{})
	if err != nil {
		t.Fatal(err)
	}
	_, st := checkUpdate(t, tc, board, up)
	w.ack(t, st.CRLNumber)
	// Half-way from its signing to next_update: half of the hour.
	if d := <-waits; d != 30*time.Minute {
		t.Errorf("the watch waits %v for the next status, want 30m", d)
	}
	tc.clock.Add(30 * time.Minute)
	fire <- tc.clock.Now()
	up, err = w.next()
	if err != nil {
		t.Fatal(err)
	}
	_, st2 := checkUpdate(t, tc, board, up)
	if st2.ThisUpdate <= st.ThisUpdate || st2.CRLNumber != st.CRLNumber {
		t.Errorf("refreshed status: this_update %d (was %d), CRL %d (was %d)", st2.ThisUpdate, st.ThisUpdate, st2.CRLNumber, st.CRLNumber)
	}
}

// TestWatchOfARevokedBoard checks that revoking the board's own certificate
// pushes a status that says so, and ends the watch once acknowledged.
func TestWatchOfARevokedBoard(t *testing.T) {
	tc := newCA(t, nil)
	ws := serveWatches(t, tc)
	board, key := tc.issueCert(t, wire.ProfileBoard, testBoard)
	w, up, err := startWatch(t, ws.addr, board, key, watchOpts{})
	if err != nil {
		t.Fatal(err)
	}
	_, st := checkUpdate(t, tc, board, up)
	w.ack(t, st.CRLNumber)
	go tc.Revoke(context.Background(), board.SerialNumber, ReasonKeyCompromise) //nolint:errcheck // checked through the push
	up, err = w.next()
	if err != nil {
		t.Fatal(err)
	}
	_, st = checkUpdate(t, tc, board, up)
	if !st.Revoked {
		t.Fatal("the push after the board's revocation says it is good")
	}
	w.ack(t, st.CRLNumber)
	if _, err := w.next(); !errors.Is(err, io.EOF) && !wire.PeerGone(err) {
		t.Errorf("after the revoked status was acknowledged: got %v, want the CA to close the watch", err)
	}
}

// TestWatchEndsOnShutdown checks that a watch ends when the server stops.
func TestWatchEndsOnShutdown(t *testing.T) {
	tc := newCA(t, nil)
	ws := serveWatches(t, tc)
	board, key := tc.issueCert(t, wire.ProfileBoard, testBoard)
	w, up, err := startWatch(t, ws.addr, board, key, watchOpts{})
	if err != nil {
		t.Fatal(err)
	}
	_, st := checkUpdate(t, tc, board, up)
	w.ack(t, st.CRLNumber)
	ws.stop() // returns only once every ServeConn has
	if n := tc.Watching(); n != 0 {
		t.Errorf("Watching() = %d after shutdown", n)
	}
}

// TestCRLServedWhenDiskFails is the regression test of finding 6: with
// crl.pem unwritable, a revocation used to leave the CA serving the previous
// CRL. Now the new CRL is served (and pushed) at once, the failure reported,
// and the file written once the disk allows.
func TestCRLServedWhenDiskFails(t *testing.T) {
	tc := newCA(t, nil)
	student, _ := tc.issueCert(t, wire.ProfileStudent, testSID)
	path := filepath.Join(tc.opts.Dir, CRLFile)
	// A directory in the way: the rename that writes crl.pem fails, whoever
	// runs the test.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	res, err := tc.Revoke(t.Context(), student.SerialNumber, ReasonKeyCompromise)
	if err != nil {
		t.Fatalf("Revoke: %v (the revocation is stored and served; only the file failed)", err)
	}
	if res.CRL.SaveErr == nil {
		t.Error("Revoke does not report that crl.pem could not be written")
	}
	data, err := tc.CRLPEM()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ParseCRLPEM(data, tc.Root())
	if err != nil {
		t.Fatal(err)
	}
	if crl.Number.Uint64() != res.CRL.Number || len(crl.RevokedCertificateEntries) != 1 {
		t.Fatalf("the CA serves CRL %v with %d entries, not the new CRL %d that lists the revocation", crl.Number, len(crl.RevokedCertificateEntries), res.CRL.Number)
	}
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	tc.tend()
	if got := currentCRL(t, tc); got.Number.Uint64() != res.CRL.Number {
		t.Errorf("crl.pem after the disk recovered holds CRL %v, want %d", got.Number, res.CRL.Number)
	}
}

// TestBoardRevocationsOutliveExpiry checks PROTOCOL.md §4.3: a revoked board
// certificate stays on the CRL after it expires; a student's drops off.
func TestBoardRevocationsOutliveExpiry(t *testing.T) {
	tc := newCA(t, nil)
	board, _ := tc.issueCert(t, wire.ProfileBoard, testBoard)
	student, _ := tc.issueCert(t, wire.ProfileStudent, testSID)
	for _, c := range []*x509.Certificate{board, student} {
		if _, err := tc.Revoke(t.Context(), c.SerialNumber, ReasonKeyCompromise); err != nil {
			t.Fatal(err)
		}
	}
	tc.clock.Add(tc.opts.CertValidity + tc.opts.CRLValidity)
	got := crlReasons(t, currentCRL(t, tc))
	if _, ok := got[keys.SerialHex(board.SerialNumber)]; !ok {
		t.Error("an expired revoked board certificate left the CRL")
	}
	if _, ok := got[keys.SerialHex(student.SerialNumber)]; ok {
		t.Error("an expired revoked student certificate is still on the CRL")
	}
}

// TestWatchRefusesOtherMessages checks that a board that sends anything but
// StatusAck on its watch is told unexpected-message and the watch ends.
func TestWatchRefusesOtherMessages(t *testing.T) {
	tc := newCA(t, nil)
	ws := serveWatches(t, tc)
	board, key := tc.issueCert(t, wire.ProfileBoard, testBoard)
	w, up, err := startWatch(t, ws.addr, board, key, watchOpts{})
	if err != nil {
		t.Fatal(err)
	}
	checkUpdate(t, tc, board, up)
	if err := w.wc.WriteMessage(&wire.Fetch{Name: CRLFile}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.next(); wire.CodeOf(err) != wire.CodeUnexpectedMessage {
		t.Errorf("a Fetch on a watch: got %v, want the CA's unexpected-message", err)
	}
	if _, err := w.next(); !errors.Is(err, io.EOF) && !wire.PeerGone(err) {
		t.Errorf("after the refusal: got %v, want the CA to close the watch", err)
	}
	ws.stop()
	if n := tc.Watching(); n != 0 {
		t.Errorf("Watching() = %d after the refusal", n)
	}
}
