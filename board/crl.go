package board

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// CRLOptions configures a CRLKeeper.
type CRLOptions struct {
	CAAddr string            // where the CA serves its CRL (board.ca_addr)
	Path   string            // where the CRL held is saved: crl.pem in the board's data dir
	Root   *x509.Certificate // the root the CRL must be signed by

	// AcceptStale lets a session through when no current CRL is held, with a
	// warning (board.crl_stale = "warn"); without it such a session is
	// refused crl-unavailable (board.crl_stale = "fail"): the board fails
	// closed.
	AcceptStale bool

	Refresh time.Duration    // how often Run fetches the CRL (board.crl_refresh)
	Log     *zap.Logger      // where the keeper says what it does; none if nil
	Now     func() time.Time // the clock Check compares the CRL's next update with; time.Now if nil
}

// CRLKeeper holds the board's current view of the CA's CRL: loaded from its
// file at start (Load), pushed by the CA on the board's watch (Watcher,
// Offer), fetched from the CA at start and every Refresh as a fallback (Fetch,
// Run), never replaced by an older CRL (a lower CRL number), and consulted
// for every session's certificate (Check). Its methods are safe for
// concurrent use.
type CRLKeeper struct {
	o CRLOptions

	saveMu  sync.Mutex // serializes Offer: what is saved never goes back
	mu      sync.RWMutex
	crl     *x509.RevocationList
	revoked map[string]x509.RevocationListEntry // by serial, hex
}

// NewCRLKeeper returns a keeper that holds no CRL yet.
func NewCRLKeeper(o CRLOptions) *CRLKeeper {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &CRLKeeper{o: o}
}

// Load installs the CRL saved by an earlier run, if there is one.
func (k *CRLKeeper) Load() error {
	data, err := os.ReadFile(k.o.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	crl, err := ca.ParseCRLPEM(data, k.o.Root)
	if err != nil {
		return fmt.Errorf("%s: %w", k.o.Path, err)
	}
	k.install(crl)
	return nil
}

// Fetch gets the CA's current CRL, checks it, installs it unless it is older
// than the one held, and saves it.
func (k *CRLKeeper) Fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	data, err := ca.Client{Addr: k.o.CAAddr}.Fetch(ctx, "crl.pem")
	if err != nil {
		return err
	}
	crl, err := ca.ParseCRLPEM(data, k.o.Root)
	if err != nil {
		return err
	}
	if _, err := k.Offer(crl); err != nil {
		return err
	}
	return nil
}

// Offer installs crl, a CRL already checked against the root (ca.ParseCRL,
// ca.ParseCRLPEM), unless the keeper holds one with a higher CRL number, and
// returns the number of the CRL held afterwards. An older CRL is an error
// (the one held stays); the one held again is no news. A new CRL is
// installed before it is saved, so that a session is checked against it at
// once; if it cannot be saved, it is held all the same and the error says so.
func (k *CRLKeeper) Offer(crl *x509.RevocationList) (*big.Int, error) {
	k.saveMu.Lock()
	defer k.saveMu.Unlock()
	k.mu.RLock()
	held := k.crl
	k.mu.RUnlock()
	switch {
	case held != nil && crl.Number.Cmp(held.Number) < 0:
		return held.Number, fmt.Errorf("the CA sent CRL number %s, older than the %s held; keeping the newer", crl.Number, held.Number)
	case held != nil && crl.Number.Cmp(held.Number) == 0:
		return held.Number, nil // the CRL held (or its twin), already saved
	}
	k.install(crl)
	if err := durable.WriteFile(k.o.Path, keys.EncodeCRLPEM(crl.Raw), 0o644); err != nil {
		return crl.Number, fmt.Errorf("CRL %s is installed but could not be saved: %w", crl.Number, err)
	}
	return crl.Number, nil
}

// Number returns the number of the CRL held, or nil when none is.
func (k *CRLKeeper) Number() *big.Int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.crl == nil {
		return nil
	}
	return k.crl.Number
}

func (k *CRLKeeper) install(crl *x509.RevocationList) {
	revoked := make(map[string]x509.RevocationListEntry, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		revoked[e.SerialNumber.Text(16)] = e
	}
	k.mu.Lock()
	changed := k.crl == nil || k.crl.Number.Cmp(crl.Number) != 0
	k.crl, k.revoked = crl, revoked
	k.mu.Unlock()
	if changed {
		k.o.Log.Info("CRL installed", zap.String("number", crl.Number.String()), zap.Int("revoked", len(revoked)),
			zap.Time("next_update", crl.NextUpdate))
	}
}

// Run fetches the CRL every Refresh until ctx is cancelled, and then
// returns. A failed fetch is logged; the CRL held is kept.
func (k *CRLKeeper) Run(ctx context.Context) {
	t := time.NewTicker(k.o.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.Fetch(ctx); err != nil && ctx.Err() == nil {
				k.o.Log.Warn("CRL refresh failed; keeping the one held", zap.Error(err))
			}
		}
	}
}

// Check is the session's revocation check (session.ServerConfig.CheckRevoked):
// a cert-revoked refusal for a certificate on the CRL held, a crl-unavailable
// one when no current CRL is held and AcceptStale is not set. It returns no
// other error, and logs why it let a session through without a current CRL.
func (k *CRLKeeper) Check(cert *x509.Certificate) error {
	k.mu.RLock()
	crl, revoked := k.crl, k.revoked
	k.mu.RUnlock()
	now := k.o.Now()
	if crl == nil || now.After(crl.NextUpdate) {
		why := "the board holds no revocation list from the CA"
		if crl != nil {
			why = fmt.Sprintf("the board's revocation list expired at %s", crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		if !k.o.AcceptStale {
			k.o.Log.Warn("session refused: no current CRL (board.crl_stale = \"fail\")", zap.String("reason", why))
			return wire.Refusef(wire.CodeCRLUnavailable, "%s and cannot check certificates now; try again later", why)
		}
		k.o.Log.Warn("accepting a session without a current CRL (board.crl_stale = \"warn\")", zap.String("reason", why))
	}
	if e, ok := revoked[cert.SerialNumber.Text(16)]; ok {
		return wire.Refusef(wire.CodeCertRevoked, "your certificate (serial %s) was revoked on %s; enroll again or ask the course staff",
			keys.SerialHex(cert.SerialNumber), e.RevocationTime.UTC().Format(time.RFC3339))
	}
	return nil
}

// Current returns the CRL held, or nil. The caller must not modify it.
func (k *CRLKeeper) Current() *x509.RevocationList {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.crl
}

// CheckFresh reports whether a current CRL is held at now: one whose
// nextUpdate has not passed (readiness; sessions use Check).
func (k *CRLKeeper) CheckFresh() error {
	crl, now := k.Current(), k.o.Now()
	switch {
	case crl == nil:
		return errors.New("the board holds no CRL from the CA")
	case now.After(crl.NextUpdate):
		return fmt.Errorf("the CRL (number %s) expired at %s", crl.Number, crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}
