package board

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// watchPKI is a root, a student certificate and two board certificates it
// issued (the second for a renewal).
type watchPKI struct {
	*crlPKI
	board, renewed       *x509.Certificate
	boardKey, renewedKey crypto.Signer
}

func newWatchPKI(t *testing.T) *watchPKI {
	t.Helper()
	p := &watchPKI{crlPKI: newCRLPKI(t)}
	issue := func() (*x509.Certificate, crypto.Signer) {
		k := testcert.Key(t)
		return testcert.Issue(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: "blackboard"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, p.root, k.Public(), p.rootKey), k
	}
	p.board, p.boardKey = issue()
	p.renewed, p.renewedKey = issue()
	return p
}

// crlDER returns a CRL numbered n, valid around now, revoking serials.
func (p *watchPKI) crlDER(t *testing.T, n int64, revoked ...*big.Int) []byte {
	t.Helper()
	now := time.Now()
	block, _ := pem.Decode(p.crl(t, n, now.Add(-time.Hour), now.Add(time.Hour), revoked...))
	return block.Bytes
}

// status returns a status for cert signed by key (the root's, unless given).
func (p *watchPKI) status(t *testing.T, cert *x509.Certificate, crl uint64, this time.Time, revoked bool, key crypto.Signer) []byte {
	t.Helper()
	if key == nil {
		key = p.rootKey
	}
	st := &wire.BoardStatus{
		Serial: cert.SerialNumber.Bytes(), CertSHA256: sha256.Sum256(cert.Raw), CRLNumber: crl, Revoked: revoked,
		ThisUpdate: uint64(this.Unix()), NextUpdate: uint64(this.Add(time.Hour).Unix()),
	}
	msg, err := st.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if st.Signature, err = keys.Sign(key, rand.Reader, msg); err != nil {
		t.Fatal(err)
	}
	enc, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// fakeWatchCA plays the CA's side of the watch: it checks the board's proof
// and hands each proven watch to the test, which pushes what it likes.
type fakeWatchCA struct {
	ln      net.Listener
	watches chan *caSide
	refuse  func(cert *x509.Certificate) *wire.Refusal // nil: accept every proven watch
}

// caSide is one watch, on the CA's side.
type caSide struct {
	wc   *wire.Conn
	cert *x509.Certificate
}

func startFakeWatchCA(t *testing.T) *fakeWatchCA {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeWatchCA{ln: ln, watches: make(chan *caSide, 8)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { f.handshake(t, c) })
		}
	})
	return f
}

func (f *fakeWatchCA) handshake(t *testing.T, c net.Conn) {
	wc := wire.NewConn(c, wire.Options{ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	req, err := wire.Expect[*wire.WatchRequest](wc.ReadMessage())
	if err != nil || req.Version != wire.ProtocolVersion {
		t.Errorf("fake CA: WatchRequest: %v, version %d", err, req.Version)
		c.Close()
		return
	}
	cert, err := x509.ParseCertificate(req.Certificate)
	if err != nil {
		t.Errorf("fake CA: the board's certificate: %v", err)
		c.Close()
		return
	}
	var ch wire.WatchChallenge
	rand.Read(ch.Nonce[:])
	if err := wc.WriteMessage(&ch); err != nil {
		c.Close()
		return
	}
	proof, err := wire.Expect[*wire.WatchProof](wc.ReadMessage())
	if err != nil {
		c.Close()
		return
	}
	if err := keys.Verify(cert.PublicKey, wire.WatchSignedBytes(ch.Nonce, req.Certificate), proof.Signature); err != nil {
		t.Errorf("fake CA: the board's proof: %v", err)
		c.Close()
		return
	}
	if f.refuse != nil {
		if r := f.refuse(cert); r != nil {
			wire.Answer(wc, r) //nolint:errcheck // closing
			c.Close()
			return
		}
	}
	f.watches <- &caSide{wc: wc, cert: cert}
}

// next returns the next proven watch.
func (f *fakeWatchCA) next(t *testing.T) *caSide {
	t.Helper()
	select {
	case s := <-f.watches:
		t.Cleanup(func() { s.wc.Close() })
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("the board did not watch the fake CA")
		return nil
	}
}

// push sends a StatusUpdate and returns the board's StatusAck, or the error
// that took its place.
func (s *caSide) push(crl, status []byte) (uint64, error) {
	if err := s.wc.WriteMessage(&wire.StatusUpdate{CRL: crl, Status: status}); err != nil {
		return 0, err
	}
	ack, err := wire.Expect[*wire.StatusAck](s.wc.ReadMessage())
	if err != nil {
		return 0, err
	}
	return ack.CRLNumber, nil
}

// identity is the board's identity as a test changes it.
type identity struct {
	mu   sync.Mutex
	cert *x509.Certificate
	key  crypto.Signer
}

func (id *identity) get() (*x509.Certificate, crypto.Signer) {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert, id.key
}

func (id *identity) set(cert *x509.Certificate, key crypto.Signer) {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.cert, id.key = cert, key
}

// runWatcher runs a watcher against addr until the test ends.
func runWatcher(t *testing.T, p *watchPKI, addr string, id *identity, now func() time.Time, log *zap.Logger) (*Watcher, *CRLKeeper) {
	t.Helper()
	k := NewCRLKeeper(CRLOptions{Path: filepath.Join(t.TempDir(), "crl.pem"), Root: p.root, Log: log})
	w := NewWatcher(WatchOptions{CAAddr: addr, Root: p.root, Identity: id.get, CRLs: k, Log: log, Now: now,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done // Run returns once its context ends
	})
	return w, k
}

func TestWatcherInstallsPushes(t *testing.T) {
	p := newWatchPKI(t)
	f := startFakeWatchCA(t)
	id := &identity{cert: p.board, key: p.boardKey}
	now := time.Now()
	clock := func() time.Time { return now }
	w, k := runWatcher(t, p, f.ln.Addr().String(), id, clock, nil)
	s := f.next(t)
	if s.cert.SerialNumber.Cmp(p.board.SerialNumber) != 0 {
		t.Fatalf("the board watches with certificate %s, not its own", keys.SerialHex(s.cert.SerialNumber))
	}
	if w.Status() != nil {
		t.Error("a status before any was pushed")
	}

	st2 := p.status(t, p.board, 2, now.Add(-time.Minute), false, nil)
	if ack, err := s.push(p.crlDER(t, 2), st2); err != nil || ack != 2 {
		t.Fatalf("first push: ack %d, %v; want 2", ack, err)
	}
	<-w.Ready()
	if got := w.Status(); string(got) != string(st2) {
		t.Error("Status() is not the status pushed")
	}
	if err := k.Check(p.student); err != nil {
		t.Errorf("the student before her revocation: %v", err)
	}

	// A new CRL revokes the student: the board enforces it before it acks.
	st3 := p.status(t, p.board, 3, now.Add(-time.Minute), false, nil)
	if ack, err := s.push(p.crlDER(t, 3, p.student.SerialNumber), st3); err != nil || ack != 3 {
		t.Fatalf("second push: ack %d, %v; want 3", ack, err)
	}
	if err := k.Check(p.student); wire.CodeOf(err) != wire.CodeCertRevoked {
		t.Errorf("after the acknowledged push: got %v, want cert-revoked", err)
	}
	if string(w.Status()) != string(st3) {
		t.Error("Status() is not the newest status")
	}

	// An older CRL and status do not replace the newer: the ack says what is held.
	if ack, err := s.push(p.crlDER(t, 2), st2); err != nil || ack != 3 {
		t.Fatalf("an older push: ack %d, %v; want 3", ack, err)
	}
	if err := k.Check(p.student); wire.CodeOf(err) != wire.CodeCertRevoked {
		t.Errorf("an older CRL replaced the newer: got %v", err)
	}
	if string(w.Status()) != string(st3) {
		t.Error("an older status replaced the newer")
	}

	// Freshness, on the injected clock.
	now = now.Add(time.Hour)
	if w.Status() != nil {
		t.Error("a status past its next_update is still returned")
	}
	now = now.Add(-2*time.Hour - time.Minute)
	if w.Status() != nil {
		t.Error("a status before its this_update is returned")
	}
	now = now.Add(time.Hour)
	// Renewed: the status held names the old certificate.
	id.set(p.renewed, p.renewedKey)
	if w.Status() != nil {
		t.Error("a status for the certificate before the renewal is returned")
	}
}

// TestWatcherRefusesBadPushes checks that a pushed status or CRL that fails
// its checks is neither acknowledged nor kept, and that the watcher connects
// again.
func TestWatcherRefusesBadPushes(t *testing.T) {
	p := newWatchPKI(t)
	other := newWatchPKI(t)
	now := time.Now()
	good := p.status(t, p.board, 2, now.Add(-time.Minute), false, nil)
	tampered := []byte(string(good))
	tampered[len(tampered)-5] ^= 1
	tests := []struct {
		name        string
		crl, status []byte
	}{
		{"status signed by another root", p.crlDER(t, 3), p.status(t, p.board, 3, now, false, other.rootKey)},
		{"status for another certificate", p.crlDER(t, 3), p.status(t, p.renewed, 3, now, false, nil)},
		{"status altered", p.crlDER(t, 3), tampered},
		{"status that does not decode", p.crlDER(t, 3), []byte("not a status")},
		{"CRL of another root", other.crlDER(t, 3), p.status(t, p.board, 3, now, false, nil)},
		{"CRL that does not parse", []byte("not a CRL"), p.status(t, p.board, 3, now, false, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeWatchCA(t)
			id := &identity{cert: p.board, key: p.boardKey}
			w, _ := runWatcher(t, p, f.ln.Addr().String(), id, nil, nil)
			s := f.next(t)
			if ack, err := s.push(p.crlDER(t, 2), good); err != nil || ack != 2 {
				t.Fatalf("good push: %d, %v", ack, err)
			}
			if _, err := s.push(tt.crl, tt.status); err == nil {
				t.Error("a bad push was acknowledged")
			}
			if string(w.Status()) != string(good) {
				t.Error("a bad push replaced the status held")
			}
			f.next(t) // the watcher connects again
		})
	}
}

// TestWatcherReconnects checks that the watcher connects again after the CA
// refuses or drops it, and at once with its new identity after Restart.
func TestWatcherReconnects(t *testing.T) {
	p := newWatchPKI(t)
	f := startFakeWatchCA(t)
	var refusals sync.WaitGroup
	refusals.Add(2)
	var mu sync.Mutex
	refused := 0
	f.refuse = func(*x509.Certificate) *wire.Refusal {
		mu.Lock()
		defer mu.Unlock()
		if refused < 2 {
			refused++
			refusals.Done()
			return wire.Refusef(wire.CodeBoardNotAuthorized, "not yet")
		}
		return nil
	}
	core, logs := observer.New(zapcore.InfoLevel)
	id := &identity{cert: p.board, key: p.boardKey}
	w, _ := runWatcher(t, p, f.ln.Addr().String(), id, nil, zap.New(core))
	s := f.next(t) // after two refusals
	refusals.Wait()
	if n := logs.FilterMessageSnippet("the CA refused the board's watch").Len(); n != 2 {
		t.Errorf("%d lines about the refusals, want 2", n)
	}
	if _, err := s.push(p.crlDER(t, 2), p.status(t, p.board, 2, time.Now(), false, nil)); err != nil {
		t.Fatal(err)
	}
	s.wc.Close() // the CA goes away
	s = f.next(t)
	if s.cert.SerialNumber.Cmp(p.board.SerialNumber) != 0 {
		t.Error("reconnected with another certificate")
	}

	id.set(p.renewed, p.renewedKey)
	w.Restart()
	s = f.next(t)
	if s.cert.SerialNumber.Cmp(p.renewed.SerialNumber) != 0 {
		t.Error("after Restart the watch does not use the renewed certificate")
	}
	st := p.status(t, p.renewed, 3, time.Now(), false, nil)
	if _, err := s.push(p.crlDER(t, 3), st); err != nil {
		t.Fatal(err)
	}
	if string(w.Status()) != string(st) {
		t.Error("the renewed certificate's status is not held")
	}

	// Renewed again, without Restart: the watch moves at the next push (or
	// at once, if the watcher looks after its last ack, which may come first).
	id.set(p.board, p.boardKey)
	s.push(p.crlDER(t, 4), p.status(t, p.renewed, 4, time.Now(), false, nil)) //nolint:errcheck // acknowledged or not, the watch moves
	if s = f.next(t); s.cert.SerialNumber.Cmp(p.board.SerialNumber) != 0 {
		t.Error("after a push the watch does not move to the current certificate")
	}
}

// TestWatcherRunEnds checks that Run returns when its context ends, whether
// it is watching or waiting to connect again.
func TestWatcherRunEnds(t *testing.T) {
	p := newWatchPKI(t)
	for _, watching := range []bool{true, false} {
		core, logs := observer.New(zapcore.InfoLevel)
		var f *fakeWatchCA
		addr := "127.0.0.1:1" // nothing listens: Run waits to connect again
		if watching {
			f = startFakeWatchCA(t)
			addr = f.ln.Addr().String()
		}
		k := NewCRLKeeper(CRLOptions{Path: filepath.Join(t.TempDir(), "crl.pem"), Root: p.root})
		w := NewWatcher(WatchOptions{CAAddr: addr, Root: p.root, Identity: (&identity{cert: p.board, key: p.boardKey}).get, CRLs: k,
			MinBackoff: time.Hour, Log: zap.New(core)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.Run(ctx)
		}()
		if watching {
			f.next(t) // the watch is up
		} else {
			<-w.Settled() // the first watch failed: Run is in its pause
			if w.Status() != nil || logs.FilterMessageSnippet("the watch on the CA ended").Len() != 1 {
				t.Errorf("settled with status %x, logs %v", w.Status(), logs.All())
			}
		}
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Run (watching %v) did not return after its context ended", watching)
		}
	}
}

// TestWatcherKeepsStatusOnDisk checks that the latest status is written to
// WatchOptions.Path as it arrives, and that a board restarted while the CA is
// unreachable loads it and shows it until it expires — but never a status for
// another certificate, or one the root did not sign.
func TestWatcherKeepsStatusOnDisk(t *testing.T) {
	p := newWatchPKI(t)
	f := startFakeWatchCA(t)
	id := &identity{cert: p.board, key: p.boardKey}
	now := time.Now()
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), StatusFile)
	k := NewCRLKeeper(CRLOptions{CAAddr: f.ln.Addr().String(), Path: filepath.Join(t.TempDir(), "crl.pem"), Root: p.root, Refresh: time.Hour, Now: clock})
	w := NewWatcher(WatchOptions{CAAddr: f.ln.Addr().String(), Root: p.root, Identity: id.get, CRLs: k, Path: path, Now: clock})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	s := f.next(t)
	st := p.status(t, p.board, 2, now.Add(-time.Minute), false, nil)
	if ack, err := s.push(p.crlDER(t, 2), st); err != nil || ack != 2 {
		t.Fatalf("push: ack %d, %v; want 2", ack, err)
	}
	cancel()
	<-done
	saved, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(saved, st) {
		t.Fatalf("the saved status: %x, %v; want the pushed one", saved, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the saved status's mode: %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	// A restart with the CA gone: the saved status serves until it expires.
	restart := func(o WatchOptions) (*Watcher, error) {
		o.CAAddr, o.Root, o.CRLs, o.Path, o.Now = "127.0.0.1:1", p.root, k, path, clock
		if o.Identity == nil {
			o.Identity = id.get
		}
		w := NewWatcher(o)
		return w, w.Load()
	}
	w2, err := restart(WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w2.Status(), st) {
		t.Error("a restarted board does not show its saved status")
	}
	select {
	case <-w2.Ready():
	default:
		t.Error("a loaded status does not make the watcher ready")
	}
	now = now.Add(2 * time.Hour)
	if w2.Status() != nil {
		t.Error("an expired saved status is shown")
	}
	now = now.Add(-2 * time.Hour)

	// Another certificate (a renewal since): the saved status is refused.
	other := &identity{cert: p.student, key: p.boardKey}
	if _, err := restart(WatchOptions{Identity: other.get}); err == nil {
		t.Error("a status for another certificate was loaded")
	}
	// A status the root did not sign is refused.
	forged := bytes.Clone(st)
	forged[len(forged)-1] ^= 1
	if err := os.WriteFile(path, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	if w3, err := restart(WatchOptions{}); err == nil || w3.Status() != nil {
		t.Error("a forged saved status was loaded")
	}
}

// TestWatcherProvesWithRSAKey checks that a board whose key is RSA (board
// key_algorithm "rsa-2048") proves its watch: RSA-PSS needs a random source,
// and signing the proof without one panicked and took the board down.
func TestWatcherProvesWithRSAKey(t *testing.T) {
	p := newWatchPKI(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert := testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "blackboard"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, p.root, key.Public(), p.rootKey)
	f := startFakeWatchCA(t)
	runWatcher(t, p, f.ln.Addr().String(), &identity{cert: cert, key: key}, time.Now, nil)
	if s := f.next(t); s.cert.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("the board watches with certificate %s, not its own", keys.SerialHex(s.cert.SerialNumber))
	}
}
