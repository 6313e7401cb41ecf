package roles

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// crlKeeper holds the board's current view of the CA's CRL: loaded from its
// data dir at start, fetched from the CA at start and every crl_refresh, never
// replaced by an older CRL (a lower CRL number), and consulted for every
// session's certificate.
type crlKeeper struct {
	addr    string
	path    string // crl.pem in the board's data dir
	root    *x509.Certificate
	stale   string // "fail" or "warn"
	refresh time.Duration
	log     *zap.Logger
	now     func() time.Time

	mu      sync.RWMutex
	crl     *x509.RevocationList
	revoked map[string]x509.RevocationListEntry // by serial, hex
}

func newCRLKeeper(cfg *config.Config, root *x509.Certificate, log *zap.Logger) *crlKeeper {
	b := &cfg.Board
	return &crlKeeper{
		addr:    b.CAAddr,
		path:    filepath.Join(b.DataDir, "crl.pem"),
		root:    root,
		stale:   b.CRLStale,
		refresh: b.CRLRefresh.D(),
		log:     log,
		now:     time.Now,
	}
}

// load installs the CRL saved by an earlier run, if there is one.
func (k *crlKeeper) load() error {
	data, err := os.ReadFile(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	crl, err := ca.ParseCRLPEM(data, k.root)
	if err != nil {
		return fmt.Errorf("%s: %w", k.path, err)
	}
	k.install(crl)
	return nil
}

// fetch gets the CA's current CRL, checks it, installs it unless it is older
// than the one held, and saves it.
func (k *crlKeeper) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	data, err := ca.Client{Addr: k.addr}.Fetch(ctx, "crl.pem")
	if err != nil {
		return err
	}
	crl, err := ca.ParseCRLPEM(data, k.root)
	if err != nil {
		return err
	}
	k.mu.RLock()
	held := k.crl
	k.mu.RUnlock()
	if held != nil && bytes.Equal(crl.Raw, held.Raw) {
		return nil // the CRL held, already saved: nothing to write
	}
	if held != nil && crl.Number.Cmp(held.Number) < 0 {
		return fmt.Errorf("the CA sent CRL number %s, older than the %s held; keeping the newer", crl.Number, held.Number)
	}
	if err := keys.WriteFileAtomic(k.path, keys.EncodeCRLPEM(crl.Raw), 0o644); err != nil {
		return err
	}
	k.install(crl)
	return nil
}

func (k *crlKeeper) install(crl *x509.RevocationList) {
	revoked := make(map[string]x509.RevocationListEntry, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		revoked[e.SerialNumber.Text(16)] = e
	}
	k.mu.Lock()
	changed := k.crl == nil || k.crl.Number.Cmp(crl.Number) != 0
	k.crl, k.revoked = crl, revoked
	k.mu.Unlock()
	if changed {
		k.log.Info("CRL installed", zap.String("number", crl.Number.String()), zap.Int("revoked", len(revoked)),
			zap.Time("next_update", crl.NextUpdate))
	}
}

// run refreshes the CRL every k.refresh until ctx is cancelled.
func (k *crlKeeper) run(ctx context.Context) {
	t := time.NewTicker(k.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.fetch(ctx); err != nil && ctx.Err() == nil {
				k.log.Warn("CRL refresh failed; keeping the one held", zap.Error(err))
			}
		}
	}
}

// check is the session's revocation check (session.ServerConfig.CheckRevoked).
func (k *crlKeeper) check(cert *x509.Certificate) error {
	k.mu.RLock()
	crl, revoked := k.crl, k.revoked
	k.mu.RUnlock()
	now := k.now()
	if crl == nil || now.After(crl.NextUpdate) {
		why := "the board holds no revocation list from the CA"
		if crl != nil {
			why = fmt.Sprintf("the board's revocation list expired at %s", crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		if k.stale == "fail" {
			k.log.Warn("session refused: no current CRL (board.crl_stale = \"fail\")", zap.String("reason", why))
			return wire.Refusef(wire.CodeCRLUnavailable, "%s and cannot check certificates now; try again later", why)
		}
		k.log.Warn("accepting a session without a current CRL (board.crl_stale = \"warn\")", zap.String("reason", why))
	}
	if e, ok := revoked[cert.SerialNumber.Text(16)]; ok {
		return wire.Refusef(wire.CodeCertRevoked, "your certificate (serial %s) was revoked on %s; enroll again or ask the course staff",
			keys.SerialHex(cert.SerialNumber), e.RevocationTime.UTC().Format(time.RFC3339))
	}
	return nil
}
