package roles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"crypto/x509/pkix"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/wire"
)

// RunCA runs the certificate authority until ctx is cancelled: it opens (or on
// first start creates) the root of trust and the store, listens for enrollment
// and fetch requests on ca.listen and for operator commands on its admin
// socket, and on cancellation stops cleanly.
func RunCA(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	if err := checkDataDir("ca", "ca.data_dir", cfg.CA.DataDir); err != nil {
		return err
	}
	auth, err := openAuthority(cfg, log)
	if err != nil {
		return err
	}
	defer auth.Close()
	c := &cfg.CA
	if c.Policy == "open" {
		log.Warn(fmt.Sprintf("enrollment policy is open: anyone who can reach %s may enroll any SID matching %s; set ca.policy = \"token\" outside a demo", c.Listen, c.SIDPattern))
	}
	if c.RosterFile != "" {
		log.Info("enrollment limited to the roster", zap.String("roster", c.RosterFile))
	}

	h := &caHandler{auth: auth, limits: c.Limits, log: log}
	return runDaemon(ctx, log, daemon{
		name: "CA", role: "ca", listen: c.Listen, dataDir: c.DataDir, limits: c.Limits,
		handle: h.handle, ops: caOps(auth),
		fields: []zap.Field{zap.String("policy", c.Policy)},
	})
}

// openAuthority opens the CA's root and store as the config describes.
func openAuthority(cfg *config.Config, log *zap.Logger) (*ca.Authority, error) {
	c := &cfg.CA
	pass, err := caPassphrase(c)
	if err != nil {
		return nil, err
	}
	auth, err := ca.Open(ca.Options{
		Dir: c.DataDir,
		Subject: pkix.Name{
			CommonName:   c.CommonName,
			Organization: nonEmpty(c.Organization),
			Country:      nonEmpty(c.Country),
		},
		KeyAlgorithm: c.KeyAlgorithm,
		Passphrase:   pass,
		RootValidity: c.RootValidity.D(),
		CertValidity: c.CertValidity.D(),
		CRLValidity:  c.CRLValidity.D(),
		Policy:       c.Policy,
		SIDPattern:   c.SIDPattern.Regexp(),
		RosterFile:   c.RosterFile,
		TokenTTL:     c.TokenTTL.D(),
		BoardName:    c.BoardName,
		Log:          log,
	})
	clear(pass)
	if err != nil {
		return nil, err // already says "ca: …"
	}
	return auth, nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// caPassphrase reads the root key's passphrase from the environment variable or
// the file the config names; nil when neither is set.
func caPassphrase(c *config.CAConfig) ([]byte, error) {
	switch {
	case c.KeyPassphraseEnv != "":
		v, ok := os.LookupEnv(c.KeyPassphraseEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("ca: key_passphrase_env names %s, but that environment variable is not set", c.KeyPassphraseEnv)
		}
		return []byte(v), nil
	case c.KeyPassphraseFile != "":
		data, err := os.ReadFile(c.KeyPassphraseFile)
		if err != nil {
			return nil, fmt.Errorf("ca: key_passphrase_file: %w", err)
		}
		pass := bytes.TrimRight(data, "\r\n")
		if len(pass) == 0 {
			return nil, fmt.Errorf("ca: key_passphrase_file %s is empty", c.KeyPassphraseFile)
		}
		return pass, nil
	}
	return nil, nil
}

// caHandler serves the CA exchange of PROTOCOL.md §4 on one connection.
type caHandler struct {
	auth   *ca.Authority
	limits config.Limits
	log    *zap.Logger
}

func (h *caHandler) handle(ctx context.Context, c net.Conn, t *tracked) {
	wc := wire.NewConn(c, wireOptions(h.limits))
	peer := c.RemoteAddr().String()
	log := h.log.With(zap.String("peer", peer))
	wait := h.limits.HandshakeTimeout.D()
	for {
		if t.idle(true) {
			return
		}
		wc.SetDeadline(time.Now().Add(wait))
		m, err := wc.ReadMessage()
		t.idle(false)
		if err != nil {
			h.readFailed(wc, log, err)
			return
		}
		wc.SetDeadline(time.Now().Add(h.limits.HandshakeTimeout.D()))
		var refusal *wire.Refusal
		switch m := m.(type) {
		case *wire.EnrollRequest:
			refusal, err = h.enroll(ctx, wc, m, peer)
		case *wire.Fetch:
			refusal, err = h.fetch(wc, m)
		default:
			err = wire.Refusef(wire.CodeUnexpectedMessage, "the CA expects EnrollRequest or Fetch, not %v", m.Type())
			wire.Answer(wc, err) //nolint:errcheck // closing
			log.Info("closing connection", zap.Error(err))
			return
		}
		switch {
		case err != nil:
			log.Warn("request failed", zap.Error(err))
			wire.Answer(wc, err) //nolint:errcheck // closing
			return
		case refusal != nil:
			// A policy refusal: tell the client, and keep serving it.
			if werr := wire.Answer(wc, refusal); werr != nil {
				return
			}
		}
		wait = h.limits.IdleTimeout.D()
	}
}

// readFailed answers what can be answered about a bad or missing request and
// logs it; the connection is closed after it.
func (h *caHandler) readFailed(wc *wire.Conn, log *zap.Logger, err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Debug("connection idle or too slow; closing", zap.Error(err))
		wire.Answer(wc, wire.Refusef(wire.CodeTimeout, "no complete request in time; closing")) //nolint:errcheck // closing
		return
	}
	log.Info("bad request; closing", zap.Error(err))
	wire.Answer(wc, err) //nolint:errcheck // closing
}

// enroll runs one enrollment: the authority decides and records; on success the
// client gets EnrollAccepted, cert.pem and root.pem. It returns the authority's
// refusal, after which the connection stays usable, or an error that ends it
// (the CA's failure, or a file transfer that failed).
func (h *caHandler) enroll(ctx context.Context, wc *wire.Conn, m *wire.EnrollRequest, peer string) (*wire.Refusal, error) {
	issued, err := h.auth.Enroll(ctx, ca.Request{
		Profile: m.Profile,
		SID:     m.SID,
		CSR:     m.CSR,
		Token:   m.Token,
		Peer:    peer,
	})
	var refusal *wire.Refusal
	if errors.As(err, &refusal) {
		return refusal, nil
	}
	if err != nil {
		return nil, err
	}
	cert := issued.Certificate
	if err := wc.WriteMessage(&wire.EnrollAccepted{
		Serial:   cert.SerialNumber.Bytes(),
		NotAfter: uint64(cert.NotAfter.Unix()),
	}); err != nil {
		return nil, err
	}
	if err := sendBytes(wc, "cert.pem", issued.PEM); err != nil {
		return nil, err
	}
	return nil, sendBytes(wc, "root.pem", h.auth.RootPEM())
}

// fetch sends one of the CA's public files. It returns the refusal of a name
// the CA does not serve, or an error that ends the connection.
func (h *caHandler) fetch(wc *wire.Conn, m *wire.Fetch) (*wire.Refusal, error) {
	var data []byte
	switch m.Name {
	case "root.pem":
		data = h.auth.RootPEM()
	case "crl.pem":
		var err error
		if data, err = h.auth.CRLPEM(); err != nil {
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

// adminSocketName is the operator socket's file name in a daemon's data dir.
const adminSocketName = "admin.sock"

// listenAdmin opens the operator socket in dataDir, readable and writable by the
// daemon's user only. A stale socket from a crashed daemon is replaced.
func listenAdmin(dataDir string) (net.Listener, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	path := filepath.Join(dataDir, adminSocketName)
	if len(path) > 100 {
		return nil, fmt.Errorf("admin socket: path %s is too long for a Unix socket (%d bytes; at most 100): use a shorter data_dir", path, len(path))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}

// isStaleSocket reports whether err from dialing the admin socket means no
// daemon is there.
func isStaleSocket(err error) bool {
	return errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "connection refused")
}
