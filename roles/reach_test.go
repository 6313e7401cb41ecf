package roles

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/ca"
	"pkiboard/internal/config"
)

// serveCA runs a CA of policy open on a listener on 127.0.0.1 until the test
// ends and returns its address.
func serveCA(t *testing.T) string {
	t.Helper()
	auth, err := ca.Open(ca.Options{
		Dir:        t.TempDir(),
		Create:     true,
		Subject:    pkix.Name{CommonName: "Test Root CA"},
		Policy:     ca.PolicyOpen,
		SIDPattern: regexp.MustCompile(`^[0-9]{10}$`),
		BoardName:  "blackboard",
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &ca.Server{Authority: auth, HandshakeTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second, Log: zap.NewNop()}
	return serveConns(t, func(c net.Conn) { srv.ServeConn(context.Background(), c, nil) }, func() { auth.Close() })
}

// serveSilent accepts connections on 127.0.0.1 and never says a word on
// them; it returns its address.
func serveSilent(t *testing.T) string {
	return serveConns(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // until the client closes
	}, nil)
}

// serveHTTP answers every connection as an HTTP server answers bytes that are
// no request (nginx's "400 Bad Request"), and returns its address.
func serveHTTP(t *testing.T) string {
	return serveConns(t, func(c net.Conn) {
		var b [512]byte
		if _, err := c.Read(b[:]); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<!DOCTYPE html>\r\n")
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	}, nil)
}

// serveConns runs handle on every connection to a listener on 127.0.0.1
// until the test ends, closing the connections and then calling done.
func serveConns(t *testing.T, handle func(net.Conn), done func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		if done != nil {
			done()
		}
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

// closedAddr returns an address on 127.0.0.1 where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestStudentNetworkMistakes points the student's ca_addr and board_addr at
// the wrong things — nothing, the board, the CA, an HTTP server, a listener
// that never answers — and checks that the student's message names the
// address, the key and what to do, that a silent peer is reported within
// student.timeout after a line saying what the student waits for, and that
// no line claims a request that was never sent.
func TestStudentNetworkMistakes(t *testing.T) {
	const timeout = 2 * time.Second
	realCA := serveCA(t)
	boardAddr, _ := serveBoard(t, newStepPKI(t), t.TempDir())
	webAddr := serveHTTP(t)
	silent := serveSilent(t)
	nothing := closedAddr(t)

	tests := []struct {
		name          string
		caAddr, board string
		addr          string   // the address the message must name
		want          []string // what else it must say
		waits         string   // the line logged while waiting, if any
		sent          bool     // a certificate request reached the CA
	}{
		{name: "no CA", caAddr: nothing, board: boardAddr, addr: nothing,
			want: []string{"nothing listens on", "student.ca_addr", "--ca-addr", "is the CA running?", "pkiboard --role=ca"}},
		{name: "no board", caAddr: realCA, board: nothing, addr: nothing, sent: true,
			want: []string{"nothing listens on", "student.board_addr", "--board-addr", "is the board running?", "pkiboard --role=board"}},
		{name: "board as CA", caAddr: boardAddr, board: boardAddr, addr: boardAddr,
			want: []string{"is a pkiboard board, not a CA", "check student.ca_addr", "--ca-addr"}},
		{name: "CA as board", caAddr: realCA, board: realCA, addr: realCA, sent: true,
			want: []string{"is a pkiboard CA, not a board", "check student.board_addr", "--board-addr"}},
		{name: "HTTP as CA", caAddr: webAddr, board: boardAddr, addr: webAddr,
			want: []string{"is an HTTP server, not a pkiboard CA", "check student.ca_addr"}},
		{name: "HTTP as board", caAddr: realCA, board: webAddr, addr: webAddr, sent: true,
			want: []string{"is an HTTP server, not a pkiboard board", "check student.board_addr"}},
		{name: "silent CA", caAddr: silent, board: boardAddr, addr: silent,
			want:  []string{"answered nothing in 2s (student.timeout)", "check student.ca_addr", "raise student.timeout"},
			waits: "waiting for the CA at " + silent + " to answer (student.timeout 2s)"},
		{name: "silent board", caAddr: realCA, board: silent, addr: silent, sent: true,
			want:  []string{"answered nothing in 2s (student.timeout)", "check student.board_addr", "raise student.timeout"},
			waits: "waiting for the board at " + silent + " to answer (student.timeout 2s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Student.DataDir = t.TempDir()
			cfg.Student.CAAddr, cfg.Student.BoardAddr = tt.caAddr, tt.board
			cfg.Student.Timeout = config.Duration(timeout)
			core, logs := observer.New(zapcore.InfoLevel)
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), 4*timeout) // a hang fails, not stalls
			defer cancel()
			err := RunStudent(ctx, cfg, zap.New(core), StudentOptions{IDs: []string{"1155000001"}, Out: &out})
			if err == nil {
				t.Fatal("the student succeeded")
			}
			if ctx.Err() != nil {
				t.Fatalf("not reported within student.timeout: %v", err)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{tt.addr}, tt.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("got %q, want it to say %q", msg, w)
				}
			}
			if got := logs.FilterMessageSnippet("waiting for the").Len() > 0; got != (tt.waits != "") {
				t.Errorf("a line saying what it waits for: got %v, want %v: %s", got, tt.waits != "", messages(logs))
			}
			if tt.waits != "" && logs.FilterMessage(tt.waits).Len() == 0 {
				t.Errorf("no line %q: %s", tt.waits, messages(logs))
			}
			if got := logs.FilterMessageSnippet("STEP 1").Len() > 0; got != tt.sent {
				t.Errorf("a STEP 1 line (request sent): got %v, want %v: %s", got, tt.sent, messages(logs))
			}
		})
	}
}

// TestOwnKeyEnrollmentServesTheStudentRole: `enroll --key FILE --out DIR`
// puts the key beside the certificate, so that the student role, looking in
// student.data_dir/SID, reuses that identity; enrolled elsewhere, it says
// where the student role looks.
func TestOwnKeyEnrollmentServesTheStudentRole(t *testing.T) {
	caAddr := serveCA(t)
	for _, intoDataDir := range []bool{true, false} {
		cfg := config.Default()
		cfg.Student.DataDir = t.TempDir()
		cfg.Student.CAAddr = caAddr
		const sid = "1155000001"
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(t.TempDir(), "my.key")
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(cfg.Student.DataDir, sid)
		if !intoDataDir {
			dir = t.TempDir()
		}
		var out bytes.Buffer
		core, logs := observer.New(zapcore.InfoLevel)
		if err := Enroll(t.Context(), cfg, zap.New(core), EnrollOptions{SID: sid, KeyFile: keyFile, OutDir: dir}, &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != sid+" sign finished\n" {
			t.Errorf("stdout: got %q, want the course's line alone", out.String())
		}
		if got := logs.FilterMessageSnippet("looks for this identity elsewhere").Len() > 0; got == intoDataDir {
			t.Errorf("into student.data_dir %v: a line saying where the student role looks: %v; log %s", intoDataDir, got, messages(logs))
		}
		if _, err := os.Stat(filepath.Join(dir, ca.KeyFile)); (err == nil) != intoDataDir {
			t.Errorf("into student.data_dir %v: key.pem beside the certificate: %v", intoDataDir, err)
		}
		if !intoDataDir {
			continue
		}
		st, err := newStudentFor(cfg, zap.NewNop(), sid, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		id, err := st.identity(t.Context(), sid, dir)
		if err != nil {
			t.Fatal(err)
		}
		if pub, ok := id.cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
			t.Errorf("the student role used another key than the one enrolled with --key")
		}
	}
}
