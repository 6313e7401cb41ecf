package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"pkiboard/wire"
)

// Server is the CA's side of the CA exchange (PROTOCOL.md §4) for an
// Authority: on one connection it answers EnrollRequest and Fetch, one
// request at a time, until the client closes the connection, stays idle
// longer than IdleTimeout, or breaks the protocol; a WatchRequest makes the
// connection a board's watch (watch.go) for as long as the watch lasts. It
// does not listen: the caller accepts connections, bounds how many there are,
// and hands each to ServeConn, which may serve many connections at once. The fields must not
// change once ServeConn has been called.
type Server struct {
	Authority *Authority
	// Wire frames each connection: its maximum frame and the read and write
	// timeouts of each frame.
	Wire wire.Options
	// HandshakeTimeout bounds the wait for the first request and the serving
	// of each request; IdleTimeout bounds the wait for each later request.
	// Both must be positive.
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	// Log receives the operational lines: requests that are malformed, fail
	// or come too late. Nil logs nothing.
	Log *zap.Logger
	// OnIssued, when set, is told of each certificate issued, once it is
	// stored durably and before it is sent: the caller logs step 2 from it.
	OnIssued func(req Request, cert *x509.Certificate)
	// OnProven and OnRefused, when set, are told what the client on c (the
	// connection ServeConn was given) has shown, for a caller that limits
	// the sources of clients that keep failing: OnProven when it proved
	// possession of a key (a certificate was issued to it), OnRefused with
	// the code of each request refused — by policy, malformed, unexpected or
	// too slow — once the refusal is answered. OnRefused returns whether the
	// connection may go on; ServeConn ends it when not.
	OnProven  func(c net.Conn)
	OnRefused func(c net.Conn, code wire.Code) (goOn bool)
}

// refused tells OnRefused of a refusal on c and returns its answer.
func (s *Server) refused(c net.Conn, code wire.Code) bool {
	if s.OnRefused == nil || code == 0 {
		return true
	}
	return s.OnRefused(c, code)
}

// ServeConn serves the requests of the client on c until it is done, an
// error ends the connection, or idle says the server is stopping. It calls
// idle(true) before waiting for a request and idle(false) once one has
// arrived; idle reports whether the server is stopping, and may cut a wait
// short by a read deadline (a nil idle never stops). ServeConn returns soon
// after ctx is cancelled, at the latest when c is closed under it; it does not
// close c.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, idle func(waiting bool) (stopping bool)) {
	if idle == nil {
		idle = func(bool) bool { return false }
	}
	log := s.Log
	if log == nil {
		log = zap.NewNop()
	}
	wc := wire.NewConn(c, s.Wire)
	peer := c.RemoteAddr().String()
	log = log.With(zap.String("peer", peer))
	wait := s.HandshakeTimeout
	for {
		if idle(true) {
			return
		}
		wc.SetDeadline(time.Now().Add(wait))
		m, err := wc.ReadMessage()
		idle(false)
		if err != nil {
			s.refused(c, readFailed(wc, log, err))
			return
		}
		wc.SetDeadline(time.Now().Add(s.HandshakeTimeout))
		var refusal *wire.Refusal
		switch m := m.(type) {
		case *wire.EnrollRequest:
			refusal, err = s.enroll(ctx, wc, m, peer)
		case *wire.Fetch:
			refusal, err = s.fetch(wc, m)
		case *wire.WatchRequest:
			s.watch(ctx, wc, m, log) // the connection is the board's watch until it ends
			return
		default:
			err = wire.Refusef(wire.CodeUnexpectedMessage, "the CA expects EnrollRequest or Fetch, not %v", m.Type())
			wire.Answer(wc, err) //nolint:errcheck // closing
			log.Info("closing connection", zap.Error(err))
			s.refused(c, wire.CodeUnexpectedMessage)
			return
		}
		switch {
		case err != nil:
			log.Warn("request failed", zap.Error(err))
			wire.Answer(wc, err) //nolint:errcheck // closing
			s.refused(c, wire.CodeOf(err))
			return
		case refusal != nil:
			// A policy refusal: tell the client, and keep serving it —
			// unless its source is out of tries.
			if werr := wire.Answer(wc, refusal); werr != nil || !s.refused(c, refusal.Code) {
				return
			}
		}
		wait = s.IdleTimeout
	}
}

// readFailed answers what can be answered about a bad or missing request and
// logs it; the connection is closed after it. It returns the code answered,
// or 0 when the client had simply gone.
func readFailed(wc *wire.Conn, log *zap.Logger, err error) wire.Code {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return 0
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Debug("connection idle or too slow; closing", zap.Error(err))
		wire.Answer(wc, wire.Refusef(wire.CodeTimeout, "no complete request in time; closing")) //nolint:errcheck // closing
		return wire.CodeTimeout
	}
	log.Info("bad request; closing", zap.Error(err))
	wire.Answer(wc, err) //nolint:errcheck // closing
	return wire.CodeOf(err)
}

// enroll runs one enrollment: the authority decides and records; on success the
// client gets EnrollAccepted, cert.pem and root.pem. It returns the authority's
// refusal, after which the connection stays usable, or an error that ends it
// (the CA's failure, or a file transfer that failed).
func (s *Server) enroll(ctx context.Context, wc *wire.Conn, m *wire.EnrollRequest, peer string) (*wire.Refusal, error) {
	req := Request{
		Profile: m.Profile,
		SID:     m.SID,
		CSR:     m.CSR,
		Token:   m.Token,
		Peer:    peer,
	}
	issued, err := s.Authority.Enroll(ctx, req)
	var refusal *wire.Refusal
	if errors.As(err, &refusal) {
		return refusal, nil
	}
	if err != nil {
		return nil, err
	}
	cert := issued.Certificate
	if s.OnProven != nil {
		s.OnProven(wc.NetConn())
	}
	if s.OnIssued != nil {
		s.OnIssued(req, cert)
	}
	if err := wc.WriteMessage(&wire.EnrollAccepted{
		Serial:   cert.SerialNumber.Bytes(),
		NotAfter: uint64(cert.NotAfter.Unix()),
	}); err != nil {
		return nil, err
	}
	if err := sendBytes(wc, CertFile, issued.PEM); err != nil {
		return nil, err
	}
	return nil, sendBytes(wc, RootFile, s.Authority.RootPEM())
}

// fetch sends one of the CA's public files. It returns the refusal of a name
// the CA does not serve, or an error that ends the connection.
func (s *Server) fetch(wc *wire.Conn, m *wire.Fetch) (*wire.Refusal, error) {
	var data []byte
	switch m.Name {
	case RootFile:
		data = s.Authority.RootPEM()
	case CRLFile:
		var err error
		if data, err = s.Authority.CRLPEM(); err != nil {
			return nil, err
		}
	default:
		return wire.Refusef(wire.CodeNotFound, "the CA serves root.pem and crl.pem, not %q", m.Name), nil
	}
	return nil, sendBytes(wc, m.Name, data)
}

// sendBytes sends data as the file name (PROTOCOL.md §3) and waits for its ack.
func sendBytes(rw wire.MessageReadWriter, name string, data []byte) error {
	_, err := wire.SendFile(rw, name, bytes.NewReader(data), int64(len(data)), sha256.Sum256(data), wire.SendOptions{})
	return err
}
