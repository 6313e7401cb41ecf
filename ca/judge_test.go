package ca

import (
	"net"
	"slices"
	"sync"
	"testing"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// judged records what Server.OnProven and OnRefused were told.
type judged struct {
	mu      sync.Mutex
	proven  int
	refused []wire.Code
	goOn    bool // what OnRefused answers
}

func (j *judged) install(srv *Server) {
	srv.OnProven = func(net.Conn) {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.proven++
	}
	srv.OnRefused = func(_ net.Conn, code wire.Code) bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.refused = append(j.refused, code)
		return j.goOn
	}
}

func (j *judged) facts() (int, []wire.Code) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.proven, slices.Clone(j.refused)
}

// TestServerTellsWhatTheClientShowed checks the facts a daemon's limits are
// driven by: each refusal's code once it is answered, a certificate issued as
// proof, and a connection ended when OnRefused says so.
func TestServerTellsWhatTheClientShowed(t *testing.T) {
	j := &judged{goOn: true}
	s := newServerCA(t, j.install)
	wc := s.dial(t)
	if err := wc.WriteMessage(&wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: wire.ProfileStudent, SID: testSID,
		CSR: []byte("not a CSR"), Root: keys.Fingerprint(s.Root())}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Expect[*wire.EnrollAccepted](wc.ReadMessage()); wire.CodeOf(err) != wire.CodeBadCSR {
		t.Fatalf("a bad CSR: got %v, want bad-csr", err)
	}
	if _, err := s.client.Enroll(t.Context(), EnrollOptions{SID: testSID, Profile: wire.ProfileStudent, KeyAlgorithm: "ecdsa-p256",
		OutDir: t.TempDir(), Root: s.Root()}); err != nil {
		t.Fatal(err)
	}
	if err := wc.WriteMessage(&wire.FileAck{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Expect[*wire.FileHeader](wc.ReadMessage()); wire.CodeOf(err) != wire.CodeUnexpectedMessage {
		t.Fatalf("a FileAck as a request: got %v, want unexpected-message", err)
	}
	wc.ReadMessage() //nolint:errcheck // waits for the close, after which the facts are told
	proven, refused := j.facts()
	if proven != 1 || !slices.Equal(refused, []wire.Code{wire.CodeBadCSR, wire.CodeUnexpectedMessage}) {
		t.Errorf("told %d proofs and refusals %v; want 1 and [bad-csr unexpected-message]", proven, refused)
	}

	// A source out of tries: the refusal is answered, then the connection ends.
	j.mu.Lock()
	j.goOn = false
	j.mu.Unlock()
	wc = s.dial(t)
	if err := wc.WriteMessage(&wire.Fetch{Version: wire.ProtocolVersion, Name: "nothing.pem"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Expect[*wire.FileHeader](wc.ReadMessage()); wire.CodeOf(err) != wire.CodeNotFound {
		t.Fatalf("fetch nothing.pem: got %v, want not-found", err)
	}
	if _, err := wc.ReadMessage(); err == nil {
		t.Error("the connection stays open after OnRefused said to end it")
	}
}
