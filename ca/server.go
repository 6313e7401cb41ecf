package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
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
// request at a time, each in one round trip (a Fetch's answer is a file
// transfer), until the client closes the connection, stays idle longer than
// IdleTimeout, or breaks the protocol; a WatchRequest makes the connection a
// board's watch (watch.go) for as long as the watch lasts. It does not listen:
// the caller accepts connections, bounds how many there are, and hands each to
// ServeConn, which may serve many connections at once. The fields must not
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
	// OnIssued, when set, is told of each certificate answered, once it is
	// stored durably and before it is sent: the caller logs step 2 from it.
	// iss.Again says it was issued earlier for the same key and is answered
	// again; iss.Renewed names the certificate a renewal superseded.
	OnIssued func(req Request, iss *Issued)
	// OnProven and OnRefused, when set, are told what the client on c (the
	// connection ServeConn was given) has shown, for a caller that limits
	// the sources of clients that keep failing: OnProven when it proved
	// possession of a key (a certificate was issued to it), OnRefused with
	// the code of each request refused — by policy, malformed, unexpected or
	// too slow — once the refusal is answered. OnRefused returns whether the
	// connection may go on; ServeConn ends it when not.
	OnProven  func(c net.Conn)
	OnRefused func(c net.Conn, code wire.Code) (goOn bool)
	// OnEnrollRefused, when set, is told of each enrollment the authority
	// refused, with its request (the metrics count them by profile).
	OnEnrollRefused func(req Request, refusal *wire.Refusal)
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
		m, err := s.readRequest(wc)
		idle(false)
		if err != nil {
			s.refused(c, s.readFailed(wc, log, peer, err))
			return
		}
		wc.SetDeadline(time.Now().Add(s.HandshakeTimeout))
		var refusal *wire.Refusal
		switch m := m.(type) {
		case *wire.EnrollRequest:
			refusal, err = s.enroll(ctx, wc, m, peer)
		case *wire.Fetch:
			if refusal, err = s.fetch(wc, m); refusal != nil {
				s.Authority.noteAnonymous(refusal, peer)
			}
		case *wire.WatchRequest:
			s.watch(ctx, wc, m, log) // the connection is the board's watch until it ends
			return
		default:
			refusal := wire.Refusef(wire.CodeUnexpectedMessage, "the CA expects EnrollRequest, Fetch or WatchRequest, not %v", m.Type())
			s.Authority.noteAnonymous(refusal, peer)
			wire.Answer(wc, refusal) //nolint:errcheck // closing
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

// readRequest reads one request. Its version, the first two bytes of the
// body of every request (PROTOCOL.md §0), is checked before the rest is
// decoded, so that a client of another version is told bad-version, not
// malformed.
func (s *Server) readRequest(wc *wire.Conn) (wire.Message, error) {
	p, err := wc.ReadFrame()
	if err != nil {
		return nil, err
	}
	if len(p) >= 3 && isRequest(wire.Type(p[0])) {
		if v := binary.BigEndian.Uint16(p[1:3]); v != wire.ProtocolVersion {
			return nil, wire.Refusef(wire.CodeBadVersion,
				"your pkiboard speaks protocol version %d; this CA speaks version %d: update pkiboard", v, wire.ProtocolVersion)
		}
	}
	return wire.Unmarshal(p)
}

// isRequest reports whether t is a message that begins a request to the CA,
// whose body begins with the protocol version.
func isRequest(t wire.Type) bool {
	switch t {
	case wire.TypeEnrollRequest, wire.TypeFetch, wire.TypeWatchRequest:
		return true
	}
	return false
}

// readFailed answers what can be answered about a bad or missing request and
// logs it; the connection is closed after it. A request that does not decode
// (bad-version, malformed, too large) comes from a peer that proved nothing:
// it is counted with the Authority's anonymous refusals, which log at most
// one line a second. It returns the code answered, or 0 when the client had
// simply gone.
func (s *Server) readFailed(wc *wire.Conn, log *zap.Logger, peer string, err error) wire.Code {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return 0
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Debug("connection idle or too slow; closing", zap.Error(err))
		wire.Answer(wc, wire.Refusef(wire.CodeTimeout, "no complete request in time; closing")) //nolint:errcheck // closing
		return wire.CodeTimeout
	}
	var refusal *wire.Refusal
	if errors.As(err, &refusal) && !wire.PeerGone(err) {
		s.Authority.noteAnonymous(refusal, peer)
	} else {
		log.Info("bad request; closing", zap.Error(err))
	}
	wire.Answer(wc, err) //nolint:errcheck // closing
	return wire.CodeOf(err)
}

// enroll runs one enrollment: the authority decides and records; on success
// the client gets EnrollAccepted with the certificate and the root, in one
// round trip. It returns the authority's refusal, after which the connection
// stays usable, or an error that ends it (the CA's failure, or a write that failed).
func (s *Server) enroll(ctx context.Context, wc *wire.Conn, m *wire.EnrollRequest, peer string) (*wire.Refusal, error) {
	req := Request{
		Profile:     m.Profile,
		SID:         m.SID,
		CSR:         m.CSR,
		Root:        m.Root,
		Auth:        m.Auth,
		TokenKey:    m.TokenKey,
		Certificate: m.Certificate,
		Signature:   m.Signature,
		Peer:        peer,
	}
	iss, err := s.Authority.Enroll(ctx, req)
	var refusal *wire.Refusal
	if errors.As(err, &refusal) {
		if s.OnEnrollRefused != nil {
			s.OnEnrollRefused(req, refusal)
		}
		if RefusalProven(err) && s.OnProven != nil {
			// Refused after the peer proved its token's or certificate's
			// key (PROTOCOL.md §4.2, after step 6): not a stranger's failure.
			s.OnProven(wc.NetConn())
		}
		return refusal, nil
	}
	if err != nil {
		return nil, err
	}
	if s.OnProven != nil {
		s.OnProven(wc.NetConn())
	}
	if s.OnIssued != nil {
		s.OnIssued(req, iss)
	}
	cert := iss.Certificate
	return nil, wc.WriteMessage(&wire.EnrollAccepted{
		Serial:      cert.SerialNumber.Bytes(),
		NotAfter:    uint64(cert.NotAfter.Unix()),
		Certificate: cert.Raw,
		Root:        s.Authority.Root().Raw, // the root the request named (checked at step 5)
	})
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
