package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// countingConn records the type byte of every frame the client writes.
type countingConn struct {
	net.Conn
	mu    *sync.Mutex
	types *[]wire.Type
	buf   []byte // bytes written and not yet parsed into frames
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	for len(c.buf) >= 5 {
		n := int(c.buf[0])<<24 | int(c.buf[1])<<16 | int(c.buf[2])<<8 | int(c.buf[3])
		if len(c.buf) < 4+n {
			break
		}
		*c.types = append(*c.types, wire.Type(c.buf[4]))
		c.buf = c.buf[4+n:]
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// counting returns a Client of addr that records the connections it opens
// and the messages it sends on them.
func counting(addr string) (Client, func() (conns int, sent []wire.Type)) {
	var mu sync.Mutex
	var conns int
	var sent []wire.Type
	c := Client{Addr: addr, Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		conns++
		mu.Unlock()
		return &countingConn{Conn: nc, mu: &mu, types: &sent}, nil
	}}
	return c, func() (int, []wire.Type) {
		mu.Lock()
		defer mu.Unlock()
		return conns, slices.Clone(sent)
	}
}

// TestEnrollRoundTrips counts the connections and messages of an enrollment
// in each case of PROTOCOL.md §4.1: a pinned client with no root sends its
// request at once and takes the root from the answer; a client with a saved
// root likewise; only a client with nothing fetches the root first.
func TestEnrollRoundTrips(t *testing.T) {
	s := newServerCA(t, nil)
	fp := keys.Fingerprint(s.Root())
	saved := keys.EncodeCertificatePEM(s.Root().Raw)
	enroll, fetch := wire.TypeEnrollRequest, wire.TypeFetch
	ack, offset := wire.TypeFileAck, wire.TypeFileOffset
	tests := []struct {
		name     string
		pin      []byte
		saved    bool
		conns    int
		sent     []wire.Type
		firstUse bool
	}{
		{"pinned", fp[:], false, 1, []wire.Type{enroll}, false},
		{"saved root", nil, true, 1, []wire.Type{enroll}, false},
		{"pinned and saved", fp[:], true, 1, []wire.Type{enroll}, false},
		{"first use", nil, false, 2, []wire.Type{fetch, offset, ack, enroll}, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.saved {
				if err := os.WriteFile(filepath.Join(dir, RootFile), saved, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, count := counting(s.client.Addr)
			res, err := c.Enroll(t.Context(), EnrollOptions{
				SID: fmt.Sprintf("115500010%d", i), KeyAlgorithm: "ecdsa-p256", OutDir: dir, RootFingerprint: tt.pin,
			})
			if err != nil {
				t.Fatal(err)
			}
			conns, sent := count()
			if conns != tt.conns || !slices.Equal(sent, tt.sent) {
				t.Errorf("got %d connections sending %v; want %d sending %v", conns, sent, tt.conns, tt.sent)
			}
			if res.FirstUse != tt.firstUse || !res.Root.Equal(s.Root()) {
				t.Errorf("first use %v, root %v; want %v and the CA's root", res.FirstUse, res.Root.Subject, tt.firstUse)
			}
			got, err := os.ReadFile(res.RootPath)
			if err != nil || string(got) != string(saved) {
				t.Errorf("root.pem: %v; want the CA's root", err)
			}
		})
	}
}

// TestEnrollRefusesSubstitutedRoot has an impostor CA answer a pinned
// client with a certificate that chains to the impostor's own root, and that
// root: the client refuses the answer and writes neither cert.pem nor
// root.pem.
func TestEnrollRefusesSubstitutedRoot(t *testing.T) {
	real := newCA(t, nil)
	fp := keys.Fingerprint(real.Root())
	fakeKey := testcert.Key(t)
	fakeRoot := testcert.Issue(t, &x509.Certificate{
		Subject: real.Root().Subject, IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, fakeKey.Public(), fakeKey)

	tests := []struct {
		name string
		root func() []byte // the root the impostor puts in its answer
	}{
		{"impostor's root", func() []byte { return fakeRoot.Raw }},
		{"real root, certificate of the impostor", func() []byte { return real.Root().Raw }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			done := make(chan error, 1)
			go func() { done <- impostor(ln, fakeRoot, fakeKey, tt.root()) }()
			dir := t.TempDir()
			_, err = Client{Addr: ln.Addr().String()}.Enroll(t.Context(), EnrollOptions{
				SID: testSID, KeyAlgorithm: "ecdsa-p256", OutDir: dir, RootFingerprint: fp[:],
			})
			if err == nil {
				t.Fatal("the client accepted an answer under a substituted root")
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{CertFile, RootFile} {
				if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: got %v, want it not written", name, err)
				}
			}
		})
	}
}

// impostor answers one EnrollRequest on ln with a certificate for the CSR's
// key issued by fakeRoot, and root as the answer's root.
func impostor(ln net.Listener, fakeRoot *x509.Certificate, fakeKey *ecdsa.PrivateKey, root []byte) error {
	nc, err := ln.Accept()
	if err != nil {
		return err
	}
	defer nc.Close()
	wc := wire.NewConn(nc, wire.Options{})
	wc.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := wire.Expect[*wire.EnrollRequest](wc.ReadMessage())
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(nil, &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: req.SID},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour).Truncate(time.Second),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true,
	}, fakeRoot, csr.PublicKey, fakeKey)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	return wc.WriteMessage(&wire.EnrollAccepted{
		Serial: cert.SerialNumber.Bytes(), NotAfter: uint64(cert.NotAfter.Unix()), Certificate: der, Root: root,
	})
}
