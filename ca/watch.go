package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// LongLived is implemented by a connection that holds its client to limits
// meant for a client that keeps talking — roles' minimum rate at which a
// client must send — and can lift them. ServeConn calls KeepOpen on such a
// connection once it has become a board's watch (PROTOCOL.md §4.4), on which
// the CA talks and the board only answers.
type LongLived interface {
	KeepOpen()
}

// watch is one board's watch: the board certificate it proved it holds, and
// what the CA's other goroutines use to reach it.
type watch struct {
	cert *x509.Certificate
	sum  [sha256.Size]byte

	kick     chan struct{} // capacity 1: a new CRL to push
	replaced chan struct{} // closed when a newer watch for the same certificate takes over
	ended    chan struct{} // closed when the watch has ended

	mu      sync.Mutex
	acked   uint64        // the highest CRL number the board acknowledged
	ackedCh chan struct{} // closed (and replaced) at each acknowledgment
}

func newWatch(cert *x509.Certificate) *watch {
	return &watch{
		cert:     cert,
		sum:      sha256.Sum256(cert.Raw),
		kick:     make(chan struct{}, 1),
		replaced: make(chan struct{}),
		ended:    make(chan struct{}),
		ackedCh:  make(chan struct{}),
	}
}

// ack records the CRL number the board says it holds.
func (w *watch) ack(n uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acked = max(w.acked, n)
	close(w.ackedCh)
	w.ackedCh = make(chan struct{})
}

// acknowledged returns the highest CRL number acknowledged, and a channel
// closed at the next acknowledgment.
func (w *watch) acknowledged() (uint64, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.ackedCh
}

// startWatch registers w, ending the watch it replaces, if any.
func (a *Authority) startWatch(w *watch) {
	a.watchMu.Lock()
	defer a.watchMu.Unlock()
	if old := a.watches[w.sum]; old != nil {
		close(old.replaced)
	}
	a.watches[w.sum] = w
}

// endWatch removes w, unless a newer watch replaced it.
func (a *Authority) endWatch(w *watch) {
	a.watchMu.Lock()
	defer a.watchMu.Unlock()
	if a.watches[w.sum] == w {
		delete(a.watches, w.sum)
	}
	close(w.ended)
}

// Watching returns the number of boards watching the CA.
func (a *Authority) Watching() int {
	a.watchMu.Lock()
	defer a.watchMu.Unlock()
	return len(a.watches)
}

// pushCRL tells every watch that a new CRL is out and returns them. It does
// not wait: each watch sends the CRL on its own connection.
func (a *Authority) pushCRL() []*watch {
	a.watchMu.Lock()
	defer a.watchMu.Unlock()
	out := make([]*watch, 0, len(a.watches))
	for _, w := range a.watches {
		select {
		case w.kick <- struct{}{}:
		default: // a push is already pending; it will send the newest CRL
		}
		out = append(out, w)
	}
	return out
}

// waitInstalled waits until each of ws has acknowledged CRL number n, a
// watch has ended, a.ackWait has passed, or ctx is done, and returns how many
// acknowledged.
func (a *Authority) waitInstalled(ctx context.Context, ws []*watch, n uint64) int {
	timeout := time.NewTimer(a.ackWait)
	defer timeout.Stop()
	installed := 0
	for _, w := range ws {
	wait:
		for {
			acked, next := w.acknowledged()
			if acked >= n {
				installed++
				break
			}
			select {
			case <-next:
			case <-w.ended:
				break wait
			case <-timeout.C:
				return installed
			case <-ctx.Done():
				return installed
			}
		}
	}
	return installed
}

// watchError is why a watch ended, for the log.
type watchError struct {
	msg string
	err error
}

func (e *watchError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}

func (e *watchError) Unwrap() error { return e.err }

// watch serves a board's watch (PROTOCOL.md §4.4) on wc: it checks the board's
// certificate and its proof of possession, then pushes the CRL and the board's
// status at once, at every new CRL and when the status is half-way through,
// until the board goes, a newer watch replaces this one, the certificate is
// revoked (after the board acknowledged the status that says so) or expires,
// or ctx is done. The connection ends with it: once proven, the watch closes
// it when it ends.
func (s *Server) watch(ctx context.Context, wc *wire.Conn, m *wire.WatchRequest, log *zap.Logger) {
	a := s.Authority
	cert, err := s.proveWatch(wc, m)
	if err != nil {
		var refusal *wire.Refusal
		c, peer := wc.NetConn(), wc.NetConn().RemoteAddr().String()
		switch {
		case errors.As(err, &refusal):
			// Nothing is proven yet: counted with the anonymous refusals,
			// which log at most a line a second, so that a stranger cannot
			// fill the log.
			a.noteAnonymous(refusal, peer)
			wire.Answer(wc, refusal) //nolint:errcheck // closing
			s.refused(c, refusal.Code)
		default:
			s.refused(c, s.readFailed(wc, log, peer, err))
		}
		return
	}
	if s.OnProven != nil {
		s.OnProven(wc.NetConn())
	}
	if ll, ok := wc.NetConn().(LongLived); ok {
		ll.KeepOpen()
	}
	w := newWatch(cert)
	a.startWatch(w)
	defer a.endWatch(w)
	log = log.With(zap.String("serial", keys.SerialHex(cert.SerialNumber)))
	log.Info("board watching")

	// From here the board sends only StatusAcks, each in answer to a push,
	// and may stay silent for as long as the status lasts: a Conn without a
	// per-frame read timeout takes over (the board sends nothing between its
	// WatchProof and the first push, so the first Conn holds no byte of it).
	// A reader of its own takes the acks, so that a board that goes is
	// noticed at once.
	wc = wire.NewConn(wc.NetConn(), wire.Options{MaxFrame: s.Wire.MaxFrame, ReadTimeout: -1, WriteTimeout: s.Wire.WriteTimeout})
	r := &ackReader{quit: make(chan struct{}), done: make(chan struct{})}
	go r.run(wc, w)
	defer func() {
		// The watch ends, and the connection with it: closing it is what
		// surely wakes the reader, wherever it is.
		close(r.quit)
		wc.Close()
		<-r.done
	}()

	err = s.push(ctx, wc, w, r)
	var refusal *wire.Refusal
	if errors.As(err, &refusal) && !wire.PeerGone(err) { // the board broke the protocol: tell it
		wire.Answer(wc, refusal) //nolint:errcheck // closing
	}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), wire.PeerGone(err):
		log.Info("board stopped watching", zap.Error(err))
	default:
		log.Info("watch ended", zap.Error(err))
	}
}

// proveWatch checks the WatchRequest's certificate, challenges the board and
// checks its proof. It returns the board's certificate, or a *wire.Refusal to
// answer, or a read error.
func (s *Server) proveWatch(wc *wire.Conn, m *wire.WatchRequest) (*x509.Certificate, error) {
	if m.Version != wire.ProtocolVersion {
		return nil, wire.Refusef(wire.CodeBadVersion, "this CA speaks version %d of the pkiboard protocol and the board version %d; update pkiboard", wire.ProtocolVersion, m.Version)
	}
	cert, err := s.Authority.watchCertificate(m.Certificate)
	if err != nil {
		return nil, err
	}
	var ch wire.WatchChallenge
	if _, err := rand.Read(ch.Nonce[:]); err != nil {
		return nil, err
	}
	if err := wc.WriteMessage(&ch); err != nil {
		return nil, err
	}
	proof, err := wire.Expect[*wire.WatchProof](wc.ReadMessage())
	if err != nil {
		return nil, err
	}
	if err := keys.Verify(cert.PublicKey, wire.WatchSignedBytes(ch.Nonce, m.Certificate), proof.Signature); err != nil {
		return nil, wire.Refusef(wire.CodeBoardNotAuthorized, "the watch proof does not verify with the board certificate's key (%v)", err)
	}
	return cert, nil
}

// watchCertificate returns the board certificate a WatchRequest carries if
// it may watch: a board certificate (profile 2) this CA issued — its exact
// bytes are in the store —, valid now and not revoked. Otherwise the error is
// a board-not-authorized refusal.
func (a *Authority) watchCertificate(der []byte) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, wire.Refusef(wire.CodeBoardNotAuthorized, "the watch's certificate does not parse: %v", err)
	}
	rec, err := a.issuedRecord(cert)
	switch {
	case errors.Is(err, errNotIssued):
		return nil, wire.Refusef(wire.CodeBoardNotAuthorized, "certificate %s is not one this CA issued", keys.SerialHex(cert.SerialNumber))
	case err != nil:
		return nil, err
	case rec.Profile != wire.ProfileBoard:
		return nil, wire.Refusef(wire.CodeBoardNotAuthorized, "certificate %s is not a board certificate", keys.SerialHex(cert.SerialNumber))
	case rec.Status == StatusRevoked:
		return nil, wire.Refusef(wire.CodeBoardNotAuthorized, "board certificate %s was revoked at %s; enroll the board again",
			keys.SerialHex(cert.SerialNumber), rec.RevokedAt.UTC().Format(timeLayout))
	}
	if now := a.now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, wire.Refusef(wire.CodeBoardNotAuthorized, "board certificate %s is valid from %s to %s, not now",
			keys.SerialHex(cert.SerialNumber), cert.NotBefore.UTC().Format(timeLayout), cert.NotAfter.UTC().Format(timeLayout))
	}
	return cert, nil
}

// ackReader reads a watch's StatusAcks in a goroutine of its own.
type ackReader struct {
	quit chan struct{} // closed to stop it
	done chan struct{} // closed when it has stopped; err is then set
	err  error
}

// run reads the board's StatusAcks into w until the connection fails, the
// board sends anything else, or r.quit is closed; then it closes r.done.
func (r *ackReader) run(wc *wire.Conn, w *watch) {
	defer close(r.done)
	r.err = readAcks(wc, w, r.quit)
}

// readAcks is the loop of ackReader.run.
func readAcks(wc *wire.Conn, w *watch, quit <-chan struct{}) error {
	for {
		m, err := wc.ReadMessage()
		select {
		case <-quit:
			return nil
		default:
		}
		if err != nil {
			return err
		}
		ack, ok := m.(*wire.StatusAck)
		if !ok {
			// The watch's writer answers it: a Conn has one writer at a time.
			return wire.Refusef(wire.CodeUnexpectedMessage, "on a watch the board sends StatusAck only, not %v", m.Type())
		}
		w.ack(ack.CRLNumber)
	}
}

// push sends StatusUpdates on the watch: one at once, then one at every new
// CRL and when the status is half-way through. A push the board does not
// acknowledge within HandshakeTimeout ends the watch.
func (s *Server) push(ctx context.Context, wc *wire.Conn, w *watch, r *ackReader) error {
	a := s.Authority
	for {
		st, crl, err := a.statusUpdate(w.cert)
		if err != nil {
			return &watchError{msg: "cannot make the board's status", err: err}
		}
		if err := wc.WriteMessage(&wire.StatusUpdate{CRL: crl, Status: st.encoded}); err != nil {
			return err
		}
		ackBy := time.NewTimer(s.HandshakeTimeout)
		err = s.awaitNext(ctx, w, st, r, ackBy.C, a.after(st.refresh.Sub(a.now())))
		ackBy.Stop()
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// errRevokedAcknowledged ends a watch whose board acknowledged the status
// that says its certificate is revoked.
var errRevokedAcknowledged = errors.New("the board acknowledged that its certificate is revoked")

// awaitNext waits, after a push, for the reason to push again: a new CRL, or
// the status half-way through (refresh). It returns nil then, or an error
// that ends the watch.
func (s *Server) awaitNext(ctx context.Context, w *watch, st *signedStatus, r *ackReader, ackBy, refresh <-chan time.Time) error {
	for {
		acked, next := w.acknowledged()
		if acked >= st.crlNumber {
			ackBy = nil
			if st.revoked {
				return &watchError{msg: "ending the watch", err: errRevokedAcknowledged}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.replaced:
			return &watchError{msg: "replaced by a newer watch of the same board certificate"}
		case <-r.done:
			return r.err
		case <-next:
		case <-ackBy:
			return &watchError{msg: "the board did not acknowledge the push in time"}
		case <-w.kick:
			return nil
		case <-refresh:
			return nil
		}
	}
}
