package roles

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/internal/logging"
	"pkiboard/internal/metrics"
	"pkiboard/internal/web"
	"pkiboard/wire"
)

// RunCA runs the certificate authority until ctx is cancelled: it binds
// ca.listen and its admin socket, opens (or on first start creates) the root
// of trust and the store, serves the CA exchange (package ca's Server) and
// operator commands, and on cancellation stops cleanly.
func RunCA(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	c := &cfg.CA
	if err := checkDataDir("ca", "ca.data_dir", c.DataDir); err != nil {
		return err
	}
	ls, err := listen("ca", c.Listen, c.DataDir)
	if err != nil {
		return err
	}
	defer ls.close()
	auth, err := openAuthority(cfg, log, true)
	if err != nil {
		return err
	}
	defer auth.Close()
	logRootReady(log, auth, c.DataDir)
	if c.Policy == "open" {
		log.Warn(fmt.Sprintf("enrollment policy is open: anyone who can reach %s may enroll any SID matching %s; set ca.policy = \"token\" outside a demo", c.Listen, c.SIDPattern))
	}
	if c.RosterFile != "" {
		log.Info("enrollment limited to the roster", zap.String("roster", c.RosterFile))
	}

	// What the server tells of each client goes to the connection's account
	// with the daemon's limits (limit.go).
	var conns sync.Map // net.Conn → *tracked
	live := &liveConns{}
	m := metrics.New(metrics.CA, metrics.State{
		CRL: func() (metrics.CRL, bool) {
			n, this, next, ok := auth.CRLInfo()
			return metrics.CRL{Number: float64(n), ThisUpdate: this, NextUpdate: next}, ok
		},
		Certificates: func() map[string]time.Time { return map[string]time.Time{"root": auth.Root().NotAfter} },
		OpenConns:    live.open,
		MaxConns:     c.MaxConns,
	})
	auth.DB().Observe(m.StoreCommit)
	ep, err := newEndpoint("ca", c.HTTP, log, m, auth.Audit, []web.Check{
		{Name: "store", Check: auth.DB().CheckWritable},
		{Name: "crl", Check: func(context.Context) error {
			_, _, next, ok := auth.CRLInfo()
			switch {
			case !ok:
				return errors.New("the CA has issued no CRL yet")
			case time.Now().After(next):
				return fmt.Errorf("the CRL the CA serves expired at %s", next.UTC().Format(time.RFC3339))
			}
			return nil
		}},
	})
	if err != nil {
		return err
	}
	defer ep.close()
	ep.caConsole(auth, log)
	issued := logIssued(log)
	srv := &ca.Server{
		Authority:        auth,
		Wire:             wireOptions(c.Limits, wire.MaxFirstFrameCA),
		HandshakeTimeout: c.Limits.HandshakeTimeout.D(),
		IdleTimeout:      c.Limits.IdleTimeout.D(),
		Log:              log,
		OnIssued: func(req ca.Request, iss *ca.Issued) {
			m.Enrollment(profileName(req.Profile), true)
			issued(req, iss)
		},
		OnEnrollRefused: func(req ca.Request, _ *wire.Refusal) { m.Enrollment(profileName(req.Profile), false) },
		OnProven: func(conn net.Conn) {
			if t, ok := conns.Load(conn); ok {
				t.(*tracked).proven()
			}
		},
		OnRefused: func(conn net.Conn, code wire.Code) bool {
			m.Refused(code.String())
			if t, ok := conns.Load(conn); ok {
				return t.(*tracked).failed(code)
			}
			return true
		},
	}
	return runDaemon(ctx, log, ls, daemon{
		name: "CA", role: "ca", limits: c.Limits,
		handle: func(ctx context.Context, conn net.Conn, t *tracked) {
			conns.Store(conn, t)
			defer conns.Delete(conn)
			srv.ServeConn(ctx, conn, t.idle)
		},
		ops:  caOps(auth),
		http: ep, conns: live,
		fields: []zap.Field{zap.String("policy", c.Policy), zap.Stringer("store_check", auth.StoreChecked())},
		loops:  []func(context.Context){auth.Run},
		stats: func(st *Stats) error {
			n := auth.Watching()
			st.WatchingBoards = &n
			// The CA's own count: it knows which of its refusals came before
			// the peer proved a token's or a certificate's key (§4.2).
			st.AnonymousRefusals = auth.AnonymousRefusalsByName()
			return nil
		},
	})
}

// logRootReady logs STEP 0: the root of trust the CA opened (or, on its first
// start, created) in dir.
func logRootReady(log *zap.Logger, auth *ca.Authority, dir string) {
	root := auth.Root()
	logging.Step(log, 0, "root of trust ready",
		zap.String("fingerprint", keys.FingerprintHex(root)),
		zap.String("subject", root.Subject.String()),
		zap.String("key", keys.Describe(root.PublicKey)),
		zap.Bool("key_encrypted", auth.KeyEncrypted()),
		zap.Time("not_after", root.NotAfter),
		zap.Bool("created", auth.Created()),
		zap.String("dir", dir))
}

// logIssued returns the CA server's OnIssued: it logs STEP 2 for each
// certificate issued, renewed, or answered again.
func logIssued(log *zap.Logger) func(ca.Request, *ca.Issued) {
	return func(req ca.Request, iss *ca.Issued) {
		cert := iss.Certificate
		what := "certificate issued"
		fields := []zap.Field{logging.SID(req.SID),
			zap.String("serial", keys.SerialHex(cert.SerialNumber)), zap.Uint8("profile", req.Profile),
			zap.String("peer", req.Peer), zap.Time("not_after", cert.NotAfter)}
		switch {
		case iss.Again:
			what = "certificate sent again (the request was already served for this key)"
		case iss.Renewed != nil:
			what = "certificate renewed"
			fields = append(fields, zap.String("renewed", keys.SerialHex(iss.Renewed)))
		}
		logging.Step(log, 2, what, fields...)
	}
}

// openAuthority opens the CA's root and store as the config describes. Only
// the CA's own start may create them (create); an operator command run
// without the daemon refuses a directory that holds no CA, and names it.
func openAuthority(cfg *config.Config, log *zap.Logger, create bool) (*ca.Authority, error) {
	c := &cfg.CA
	pass, err := caPassphrase(c)
	if err != nil {
		return nil, err
	}
	auth, err := ca.Open(ca.Options{
		Dir:    c.DataDir,
		Create: create,
		Subject: pkix.Name{
			CommonName:   c.CommonName,
			Organization: nonEmpty(c.Organization),
			Country:      nonEmpty(c.Country),
		},
		KeyAlgorithm:   c.KeyAlgorithm,
		Passphrase:     pass,
		RootValidity:   c.RootValidity.D(),
		CertValidity:   c.CertValidity.D(),
		CRLValidity:    c.CRLValidity.D(),
		StatusValidity: c.StatusValidity.D(),
		Policy:         c.Policy,
		SIDPattern:     c.SIDPattern.Regexp(),
		RosterFile:     c.RosterFile,
		TokenTTL:       c.TokenTTL.D(),
		BoardName:      c.BoardName,
		Log:            log,
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

// profileName is a certificate profile as the metrics name it.
func profileName(p uint8) string {
	switch p {
	case wire.ProfileStudent:
		return "student"
	case wire.ProfileBoard:
		return "board"
	}
	return ""
}
