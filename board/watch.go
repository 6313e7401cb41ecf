package board

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// WatchMaxFrame is the largest frame the board reads on its watch: a
// StatusUpdate with the largest CRL and status PROTOCOL.md §4.4 allows.
const WatchMaxFrame = 1 + 4 + wire.MaxCRLLen + 2 + wire.MaxBoardStatusLen

// Defaults of WatchOptions.
const (
	DefaultWatchTimeout = 30 * time.Second
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = time.Minute
)

// WatchOptions configures a Watcher.
type WatchOptions struct {
	CAAddr string            // the CA (board.ca_addr)
	Root   *x509.Certificate // the root the CRL and the status must be signed by
	// Identity returns the board's current certificate and key. It is called
	// at each connection, and by Status, so that a renewed certificate is
	// watched (and its status required) from the next connection on; Restart
	// makes that at once.
	Identity func() (*x509.Certificate, crypto.Signer)
	// CRLs receives each CRL the CA pushes.
	CRLs *CRLKeeper
	// Path, if set, is where the latest status is kept (written durably each
	// time a newer one arrives), so that a board restarted while the CA is
	// unreachable can show its status until the status expires (Load).
	Path string

	// Timeout bounds connecting, the watch's handshake up to the first
	// StatusUpdate, and each write; DefaultWatchTimeout if zero.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the pause before connecting again after
	// a watch failed or broke: it starts at MinBackoff and doubles up to
	// MaxBackoff, and starts again once a watch was established.
	MinBackoff, MaxBackoff time.Duration

	Log *zap.Logger      // where the watcher says what it does; none if nil
	Now func() time.Time // the clock Status compares the status's times with; time.Now if nil
}

// StatusFile is the name of the file, in the board's data directory, that
// keeps its latest status (WatchOptions.Path).
const StatusFile = "status.bin"

// heldStatus is the board's latest status, as the CA signed it.
type heldStatus struct {
	encoded []byte
	st      *wire.BoardStatus
	cert    []byte // the DER of the certificate it names
}

// Watcher keeps the board's watch on the CA (PROTOCOL.md §4.4): one
// connection on which the CA pushes each new CRL, installed in the CRLKeeper,
// and the board's root-signed status, which the board staples to its
// sessions (Status). It connects again, after a growing pause, whenever the
// watch fails. Its methods are safe for concurrent use.
type Watcher struct {
	o WatchOptions

	mu      sync.Mutex
	status  *heldStatus
	conn    net.Conn      // the watch's connection, while there is one
	ready   chan struct{} // closed once a status is held
	settled chan struct{} // closed once a status is held or the first watch failed
	settle  sync.Once
}

// NewWatcher returns a Watcher that holds no status yet; Run starts it.
func NewWatcher(o WatchOptions) *Watcher {
	if o.Timeout <= 0 {
		o.Timeout = DefaultWatchTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Watcher{o: o, ready: make(chan struct{}), settled: make(chan struct{})}
}

// Status returns the board's current status, encoded as the CA signed it
// (wire.BoardStatus), for the board to staple to a session — or nil when it
// holds none that is fresh: none yet, one past its next_update or not yet
// valid, or one that names another certificate than the board's current one.
// A status that says the board's certificate is revoked is returned as it is:
// the student refuses it.
func (w *Watcher) Status() []byte {
	w.mu.Lock()
	h := w.status
	w.mu.Unlock()
	if h == nil {
		return nil
	}
	if cert, _ := w.o.Identity(); cert == nil || !bytes.Equal(cert.Raw, h.cert) {
		return nil
	}
	now := w.o.Now().Unix()
	if now < int64(h.st.ThisUpdate) || now > int64(h.st.NextUpdate) {
		return nil
	}
	return h.encoded
}

// Load takes the status kept at WatchOptions.Path by an earlier run, if
// there is one that the root signed for the board's current certificate: a
// board restarted while the CA is unreachable serves with it until it
// expires (Status checks the time). A missing file is no error.
func (w *Watcher) Load() error {
	if w.o.Path == "" {
		return nil
	}
	data, err := os.ReadFile(w.o.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("board: saved status: %w", err)
	}
	cert, _ := w.o.Identity()
	if cert == nil {
		return errors.New("board: saved status: the board has no certificate")
	}
	st, err := checkStatus(data, w.o.Root, cert)
	if err != nil {
		return fmt.Errorf("board: saved status %s: %w", w.o.Path, err)
	}
	w.keep(&heldStatus{encoded: data, st: st, cert: cert.Raw})
	return nil
}

// Ready returns a channel closed once the watcher holds a status.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Settled returns a channel closed once the watcher holds a status or its
// first watch failed: what a board waits for before it serves, so that its
// first sessions have a status to show if the CA can give one.
func (w *Watcher) Settled() <-chan struct{} { return w.settled }

// Restart ends the current watch, if any, so that Run connects again at once
// with the board's current identity: after a renewal.
func (w *Watcher) Restart() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
	}
}

// Run keeps the watch until ctx is cancelled, and then returns. A watch that
// cannot be established or breaks is logged and tried again after a pause.
func (w *Watcher) Run(ctx context.Context) {
	backoff := w.o.MinBackoff
	for ctx.Err() == nil {
		established, err := w.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if established {
			backoff = w.o.MinBackoff
		}
		w.logFailure(err, backoff)
		w.settle.Do(func() { close(w.settled) })
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if !established {
			backoff = min(2*backoff, w.o.MaxBackoff)
		}
	}
}

// logFailure says why a watch ended, and when the next begins.
func (w *Watcher) logFailure(err error, backoff time.Duration) {
	var peer *wire.Error
	switch {
	case errors.As(err, &peer):
		w.o.Log.Warn("the CA refused the board's watch; the board fetches the CRL every board.crl_refresh meanwhile",
			zap.Stringer("code", peer.Code), zap.String("reason", peer.Text), zap.Duration("retry_in", backoff))
	default:
		w.o.Log.Warn("the watch on the CA ended; the board fetches the CRL every board.crl_refresh meanwhile",
			zap.Error(err), zap.Duration("retry_in", backoff))
	}
}

// watch runs one watch: it connects, proves the board's certificate, and
// installs what the CA pushes, until the connection breaks, the CA sends
// something wrong, or ctx ends. established says whether a first
// StatusUpdate was installed.
func (w *Watcher) watch(ctx context.Context) (established bool, err error) {
	cert, key := w.o.Identity()
	if cert == nil || key == nil {
		return false, errors.New("the board has no certificate to watch with")
	}
	d := net.Dialer{Timeout: w.o.Timeout}
	nc, err := d.DialContext(ctx, "tcp", w.o.CAAddr)
	if err != nil {
		return false, fmt.Errorf("connect to the CA at %s: %w", w.o.CAAddr, err)
	}
	w.mu.Lock()
	w.conn = nc
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.conn = nil
		w.mu.Unlock()
		nc.Close()
	}()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	// No per-frame read timeout: the CA talks when it has news, and the
	// connection's deadline says how long the board waits for it.
	wc := wire.NewConn(nc, wire.Options{MaxFrame: WatchMaxFrame, ReadTimeout: -1, WriteTimeout: w.o.Timeout})
	wc.SetDeadline(time.Now().Add(w.o.Timeout))
	if err := w.prove(wc, cert, key); err != nil {
		return false, err
	}
	for {
		up, err := wire.Expect[*wire.StatusUpdate](wc.ReadMessage())
		if err != nil {
			return established, err
		}
		held, err := w.apply(up, cert)
		if err != nil {
			wire.Answer(wc, wire.Refusef(wire.CodeMalformed, "%v", err)) //nolint:errcheck // closing
			return established, err
		}
		if err := wc.WriteMessage(&wire.StatusAck{CRLNumber: held}); err != nil {
			return established, err
		}
		if !established {
			established = true
			w.o.Log.Info("watching the CA: it pushes each new CRL and the board's status", zap.String("ca", w.o.CAAddr),
				zap.Uint64("crl", held))
		}
		if cur, _ := w.o.Identity(); cur == nil || !bytes.Equal(cur.Raw, cert.Raw) {
			return established, errors.New("the board's certificate was renewed; watching with the new one")
		}
		// The CA pushes again at the latest when the status is half-way
		// through; wait for up to its whole validity before giving up.
		wc.SetDeadline(time.Now().Add(w.wait()))
	}
}

// prove sends the WatchRequest and answers the CA's challenge with the
// board's signature.
func (w *Watcher) prove(wc *wire.Conn, cert *x509.Certificate, key crypto.Signer) error {
	if err := wc.WriteMessage(&wire.WatchRequest{Version: wire.ProtocolVersion, Certificate: cert.Raw}); err != nil {
		return err
	}
	ch, err := wire.Expect[*wire.WatchChallenge](wc.ReadMessage())
	if err != nil {
		return err
	}
	sig, err := keys.Sign(key, rand.Reader, wire.WatchSignedBytes(ch.Nonce, cert.Raw))
	if err != nil {
		return err
	}
	return wc.WriteMessage(&wire.WatchProof{Signature: sig})
}

// wait returns how long the watch waits for the CA's next push: the whole
// validity of the status held, and at least a minute.
func (w *Watcher) wait() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := time.Minute
	if h := w.status; h != nil && h.st.NextUpdate > h.st.ThisUpdate {
		d = max(d, time.Duration(h.st.NextUpdate-h.st.ThisUpdate)*time.Second)
	}
	return d
}

// apply checks and installs what a StatusUpdate carries, for the board whose
// certificate is cert, and returns the number of the CRL the board holds
// afterwards (its StatusAck). The CRL must be signed by the root and
// numbered; it is installed unless a newer one is held. The status must be
// signed by the root and name cert; it replaces the one held unless that one
// is newer (a higher CRL number, or the same and a later this_update).
func (w *Watcher) apply(up *wire.StatusUpdate, cert *x509.Certificate) (uint64, error) {
	crl, err := ca.ParseCRL(up.CRL, w.o.Root)
	if err != nil {
		return 0, fmt.Errorf("the CA pushed a CRL that fails its checks: %w", err)
	}
	if !crl.Number.IsUint64() {
		return 0, fmt.Errorf("the CA pushed CRL number %s, beyond the protocol's u64", crl.Number)
	}
	held, err := w.o.CRLs.Offer(crl)
	if err != nil {
		// Installed but not saved, or older than the one held: the CRL held
		// is in force either way.
		w.o.Log.Warn("pushed CRL", zap.Error(err))
	}
	st, err := checkStatus(up.Status, w.o.Root, cert)
	if err != nil {
		return 0, err
	}
	if w.keep(&heldStatus{encoded: up.Status, st: st, cert: cert.Raw}) && w.o.Path != "" {
		if err := durable.WriteFile(w.o.Path, up.Status, 0o600); err != nil {
			w.o.Log.Warn("could not keep the board's status on disk; it is held in memory", zap.Error(err))
		}
	}
	if st.Revoked {
		if cur, _ := w.o.Identity(); cur != nil && !bytes.Equal(cur.Raw, cert.Raw) {
			// Renewed meanwhile: the CA revokes the renewed certificate
			// (superseded), and the watch moves to the new one.
			w.o.Log.Info("the board's previous certificate is revoked; watching with the current one",
				zap.String("serial", keys.SerialHex(cert.SerialNumber)))
		} else {
			w.o.Log.Error("the CA's status says this board's certificate is revoked: students refuse the board; enroll it again",
				zap.String("serial", keys.SerialHex(cert.SerialNumber)))
		}
	}
	return held.Uint64(), nil
}

// keep makes h the status held unless the one held is newer, and reports
// whether it did.
func (w *Watcher) keep(h *heldStatus) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old := w.status; old != nil && bytes.Equal(old.cert, h.cert) &&
		(old.st.CRLNumber > h.st.CRLNumber || old.st.CRLNumber == h.st.CRLNumber && old.st.ThisUpdate >= h.st.ThisUpdate) {
		return false
	}
	w.status = h
	select {
	case <-w.ready:
	default:
		close(w.ready)
		w.settle.Do(func() { close(w.settled) })
	}
	return true
}

// checkStatus decodes a BoardStatus and checks that root signed it and that
// it names cert.
func checkStatus(enc []byte, root, cert *x509.Certificate) (*wire.BoardStatus, error) {
	st, err := wire.ParseBoardStatus(enc)
	if err != nil {
		return nil, fmt.Errorf("the CA pushed a status that does not decode: %w", err)
	}
	msg, err := st.SignedBytes()
	if err != nil {
		return nil, err
	}
	if err := keys.Verify(root.PublicKey, msg, st.Signature); err != nil {
		return nil, fmt.Errorf("the CA pushed a status not signed by the root: %w", err)
	}
	if new(big.Int).SetBytes(st.Serial).Cmp(cert.SerialNumber) != 0 || st.CertSHA256 != sha256.Sum256(cert.Raw) {
		return nil, fmt.Errorf("the CA pushed a status for another certificate (serial %x) than the board's %s", st.Serial, keys.SerialHex(cert.SerialNumber))
	}
	return st, nil
}
