package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"pkiboard/internal/keys"
)

// maxTLSUpload bounds the size a tls-upload server accepts.
const maxTLSUpload = 64 << 30

// tlsUploadBuffer is the size of the tls-upload server's copy buffer, and of
// the client's writes: 64 KiB, the size of our Data records.
const tlsUploadBuffer = 64 << 10

// tlsUploadMain is the TLS 1.3 upload peer: mutual authentication against the
// root as tls-server's, then per connection an 8-byte big-endian size and
// that many bytes, hashed with SHA-256 and written to a new file as they
// arrive; the file is fsynced, and the hash answered.
func tlsUploadMain(args []string) {
	ln, dir := listenTLSPeer("tls-upload", args)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if err := receiveTLSUpload(c, dir); err != nil {
				fmt.Fprintf(os.Stderr, "tls-upload: %v\n", err)
			}
		}()
	}
}

// tlsServerConfig is the baseline servers' TLS configuration: TLS 1.3 only,
// the board's certificate, clients verified against the root.
func tlsServerConfig(keyPath, certPath, rootPath string) *tls.Config {
	key, err := keys.ReadPrivateKey(keyPath, nil)
	if err != nil {
		fatalf("%v", err)
	}
	cert, err := keys.ReadCertificate(certPath)
	if err != nil {
		fatalf("%v", err)
	}
	root, err := keys.ReadCertificate(rootPath)
	if err != nil {
		fatalf("%v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}
}

// receiveTLSUpload serves one upload on c into a new file in dir.
func receiveTLSUpload(c net.Conn, dir string) error {
	c.SetDeadline(time.Now().Add(time.Minute))
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint64(hdr[:])
	if size > maxTLSUpload {
		return fmt.Errorf("an upload of %d bytes", size)
	}
	f, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, tlsUploadBuffer)
	for left := int64(size); left > 0; {
		c.SetDeadline(time.Now().Add(time.Minute))
		n, err := c.Read(buf[:min(int64(len(buf)), left)])
		if n > 0 {
			h.Write(buf[:n])
			if _, werr := f.Write(buf[:n]); werr != nil {
				return werr
			}
			left -= int64(n)
		}
		if err != nil && left > 0 {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	_, err = c.Write(h.Sum(nil))
	return err
}

// tlsUploadOnce sends size bytes of f to the tls-upload server at addr as
// student s and checks the SHA-256 it answers; it returns the cipher suite
// the connection used.
func tlsUploadOnce(addr string, s *student, f *os.File, size int64, sum [32]byte) (uint16, error) {
	cfg := &tls.Config{
		Certificates:       []tls.Certificate{{Certificate: [][]byte{s.cert.Raw}, PrivateKey: s.key, Leaf: s.cert}},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // the board certificate has no DNS name; checked below instead
		VerifyConnection:   verifyBoard(s.roots),
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(size))
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write(hdr[:]); err != nil {
		return 0, err
	}
	buf := make([]byte, tlsUploadBuffer)
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 {
			c.SetDeadline(time.Now().Add(time.Minute))
			if _, err := c.Write(buf[:n]); err != nil {
				return 0, err
			}
			off += int64(n)
		}
		if err != nil && off < size {
			return 0, err
		}
	}
	var got [32]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return 0, err
	}
	if got != sum {
		return 0, errors.New("the server's SHA-256 of the upload differs")
	}
	return c.ConnectionState().CipherSuite, nil
}
