package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// issuedFact is what Server.OnIssued was told.
type issuedFact struct {
	req  Request
	cert *x509.Certificate
	iss  *Issued
}

// serverCA is an Authority on the real clock (the client verifies what it
// receives at the current time) served by a Server on 127.0.0.1 until the
// test ends, with what OnIssued was told.
type serverCA struct {
	*testCA
	srv    *Server
	client Client

	mu     sync.Mutex
	issued []issuedFact
}

func newServerCA(t *testing.T, mod func(*Server)) *serverCA {
	t.Helper()
	tc := newCA(t, func(o *Options) { o.Now = time.Now })
	s := &serverCA{testCA: tc}
	s.srv = &Server{
		Authority:        tc.Authority,
		Wire:             wire.Options{MaxFrame: 64 << 10, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second},
		HandshakeTimeout: 5 * time.Second,
		IdleTimeout:      5 * time.Second,
		OnIssued: func(req Request, iss *Issued) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.issued = append(s.issued, issuedFact{req, iss.Certificate, iss})
		},
	}
	if mod != nil {
		mod(s.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				s.srv.ServeConn(ctx, c, nil)
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	s.client = Client{Addr: ln.Addr().String()}
	return s
}

// dial opens a raw connection to the server, closed when the test ends.
func (s *serverCA) dial(t *testing.T) *wire.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.client.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	wc := wire.NewConn(c, wire.Options{})
	wc.SetDeadline(time.Now().Add(10 * time.Second))
	return wc
}

// TestServerEnrolls enrolls a student and the board through the server and
// checks what the client received and what OnIssued was told: the facts of
// the CA's STEP 2 line (roles TestCALogsIssued checks the line).
func TestServerEnrolls(t *testing.T) {
	s := newServerCA(t, nil)
	tests := []struct {
		name    string
		profile uint8
		sid     string
		token   string
		usage   x509.ExtKeyUsage
	}{
		{"student", wire.ProfileStudent, testSID, "", x509.ExtKeyUsageClientAuth},
		{"board", wire.ProfileBoard, testBoard, s.boardToken(t), x509.ExtKeyUsageServerAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := s.client.Enroll(t.Context(), EnrollOptions{
				SID: tt.sid, Profile: tt.profile, Token: tt.token, KeyAlgorithm: "ecdsa-p256", OutDir: dir,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Root.Equal(s.Root()) || !res.FirstUse || !res.GeneratedKey {
				t.Errorf("root %v (want the CA's), first use %v, generated key %v; want true, true", res.Root.Subject, res.FirstUse, res.GeneratedKey)
			}
			if res.Certificate.Subject.CommonName != tt.sid || res.Certificate.ExtKeyUsage[0] != tt.usage {
				t.Errorf("certificate for %q, EKU %v", res.Certificate.Subject.CommonName, res.Certificate.ExtKeyUsage)
			}
			for _, path := range []string{res.KeyPath, res.CertPath, res.RootPath} {
				if !strings.HasPrefix(path, dir) {
					t.Errorf("%s is not in the output directory %s", path, dir)
				}
			}
			s.mu.Lock()
			last := s.issued[len(s.issued)-1]
			s.mu.Unlock()
			if last.req.SID != tt.sid || last.req.Profile != tt.profile || !strings.HasPrefix(last.req.Peer, "127.0.0.1:") ||
				last.cert.SerialNumber.Cmp(res.Certificate.SerialNumber) != 0 || !last.cert.NotAfter.Equal(res.Certificate.NotAfter) {
				t.Errorf("OnIssued told sid %q profile %d peer %q serial %s not_after %v; want %q, %d, 127.0.0.1:…, %s, %v",
					last.req.SID, last.req.Profile, last.req.Peer, keys.SerialHex(last.cert.SerialNumber), last.cert.NotAfter,
					tt.sid, tt.profile, keys.SerialHex(res.Certificate.SerialNumber), res.Certificate.NotAfter)
			}
		})
	}
	if len(s.issued) != len(tests) {
		t.Errorf("OnIssued called %d times for %d certificates", len(s.issued), len(tests))
	}
}

// TestServerFetch serves the root and the CRL, and refuses any other name.
func TestServerFetch(t *testing.T) {
	s := newServerCA(t, nil)
	root, err := s.client.FetchRoot(t.Context())
	if err != nil || !root.Equal(s.Root()) {
		t.Fatalf("FetchRoot: got %v, %v; want the CA's root", root, err)
	}
	data, err := s.client.Fetch(t.Context(), CRLFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCRLPEM(data, root); err != nil {
		t.Errorf("the CRL served: %v", err)
	}
	_, err = s.client.Fetch(t.Context(), "root-key.pem")
	if code := wire.CodeOf(err); code != wire.CodeNotFound {
		t.Errorf("fetch root-key.pem: got %v (code %v), want not-found", err, code)
	}
}

// TestServerKeepsServingAfterARefusal sends requests one after another on one
// connection: a refused enrollment and an unknown name leave it usable; a
// message the CA does not expect ends it.
func TestServerKeepsServingAfterARefusal(t *testing.T) {
	s := newServerCA(t, nil)
	wc := s.dial(t)
	if err := wc.WriteMessage(&wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: wire.ProfileStudent, SID: testSID, CSR: []byte("not a CSR"), Root: s.rootFP}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Expect[*wire.EnrollAccepted](wc.ReadMessage()); wire.CodeOf(err) != wire.CodeBadCSR {
		t.Fatalf("a bad CSR: got %v, want bad-csr", err)
	}
	if err := wc.WriteMessage(&wire.Fetch{Version: wire.ProtocolVersion, Name: "nothing.pem"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Expect[*wire.FileHeader](wc.ReadMessage()); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("fetch nothing.pem: got %v, want not-found", err)
	}
	if err := wc.WriteMessage(&wire.Fetch{Version: wire.ProtocolVersion, Name: RootFile}); err != nil {
		t.Fatal(err)
	}
	data, err := receivePEM(wc, RootFile)
	if err != nil || string(data) != string(s.RootPEM()) {
		t.Fatalf("root.pem after two refusals: got %d bytes, %v", len(data), err)
	}
	if err := wc.WriteMessage(&wire.FileAck{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Expect[*wire.FileHeader](wc.ReadMessage()); wire.CodeOf(err) != wire.CodeUnexpectedMessage {
		t.Fatalf("a FileAck as a request: got %v, want unexpected-message", err)
	}
	if _, err := wc.ReadMessage(); err == nil {
		t.Error("the connection stays open after an unexpected message")
	}
	if len(s.issued) != 0 {
		t.Errorf("OnIssued called %d times for refusals", len(s.issued))
	}
}

// TestServerTimesOutASilentClient answers a client that sends no frame within
// the read timeout with a timeout refusal.
func TestServerTimesOutASilentClient(t *testing.T) {
	s := newServerCA(t, func(srv *Server) { srv.Wire.ReadTimeout = 100 * time.Millisecond })
	wc := s.dial(t)
	if _, err := wire.Expect[*wire.FileHeader](wc.ReadMessage()); wire.CodeOf(err) != wire.CodeTimeout {
		t.Fatalf("got %v, want timeout", err)
	}
}

// TestServeConnStopsWhenIdleSaysSo returns without reading when the server is
// stopping, and marks the connection idle only while it waits for a request.
func TestServeConnStopsWhenIdleSaysSo(t *testing.T) {
	s := newServerCA(t, nil)
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	var marks []bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.srv.ServeConn(t.Context(), server, func(waiting bool) bool {
			marks = append(marks, waiting)
			return waiting && len(marks) > 2 // stop at the second wait
		})
	}()
	wc := wire.NewConn(client, wire.Options{})
	wc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wc.WriteMessage(&wire.Fetch{Version: wire.ProtocolVersion, Name: "nothing.pem"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return when idle said stop")
	}
	if want := []bool{true, false, true}; !slices.Equal(marks, want) {
		t.Errorf("idle marks: got %v want %v", marks, want)
	}
}

// TestServerRefusesOtherVersions answers a request of another protocol
// version bad-version, with a sentence that says to update pkiboard, before
// decoding the rest, and closes; the refusal is counted, not stored.
func TestServerRefusesOtherVersions(t *testing.T) {
	s := newServerCA(t, nil)
	v1Enroll := []byte{byte(wire.TypeEnrollRequest), 1, 10}
	v1Enroll = append(v1Enroll, testSID...)
	v1Enroll = append(v1Enroll, 0, 1, 0x30, 0)
	v3Fetch := []byte{byte(wire.TypeFetch), 0, 3, 8}
	v3Fetch = append(v3Fetch, "root.pem"...)
	v1Fetch := append([]byte{byte(wire.TypeFetch), 8}, "root.pem"...)
	v3Watch := []byte{byte(wire.TypeWatchRequest), 0, 3, 0, 0}
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"version 1 EnrollRequest", v1Enroll},
		{"version 1 Fetch", v1Fetch},
		{"version 3 Fetch", v3Fetch},
		{"version 3 WatchRequest", v3Watch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.AnonymousRefusals()[wire.CodeBadVersion]
			wc := s.dial(t)
			if err := wc.WriteFrame(tc.payload); err != nil {
				t.Fatal(err)
			}
			_, err := wire.Expect[*wire.FileHeader](wc.ReadMessage())
			var peer *wire.Error
			if !errors.As(err, &peer) || peer.Code != wire.CodeBadVersion || !strings.Contains(peer.Text, "update pkiboard") {
				t.Fatalf("got %v, want bad-version saying to update pkiboard", err)
			}
			if _, err := wc.ReadMessage(); err == nil {
				t.Error("the connection stays open after bad-version")
			}
			if got := s.AnonymousRefusals()[wire.CodeBadVersion]; got != before+1 {
				t.Errorf("bad-version refusals counted: %d, want %d", got, before+1)
			}
		})
	}
	if ds, _ := s.Refusals(0); len(ds) != 0 {
		t.Errorf("%d refusals stored", len(ds))
	}
}
