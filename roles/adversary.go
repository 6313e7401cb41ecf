package roles

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"pkiboard/adversary"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
)

// AdversaryOptions is what the adversary role is asked to do. It has no
// config section: it takes its addresses and its attack from flags, and only
// [log] from the config.
type AdversaryOptions struct {
	Listen   string // where students connect (host:port)
	Upstream string // the board (host:port)
	Attack   string // one of adversary.Attacks()
	CertFile string // the adversary's own certificate (PEM), or ""
	KeyFile  string // its key (PEM), with CertFile
	// Status is a file holding a board status (wire.BoardStatus, as the CA
	// signed it: a board's status.bin) that impersonate-board staples, or "".
	Status string
}

// Limits of the adversary's accept loop.
const (
	adversaryMaxConns        = 64
	adversaryShutdownTimeout = 5 * time.Second
)

// RunAdversary runs the man in the middle until ctx is cancelled: it listens
// on opts.Listen, and for each student that connects runs opts.Attack on the
// session, connecting to the board at opts.Upstream (except impersonate-board,
// which plays the board itself). Every step is logged as "ATTACK name: …".
func RunAdversary(ctx context.Context, log *zap.Logger, opts AdversaryOptions) error {
	chain, key, err := adversaryIdentity(opts.CertFile, opts.KeyFile)
	if err != nil {
		return fmt.Errorf("adversary: %w", err)
	}
	var status []byte
	if opts.Status != "" {
		if status, err = os.ReadFile(opts.Status); err != nil {
			return fmt.Errorf("adversary: --status: %w", err)
		}
	}
	adv, err := adversary.New(adversary.Config{
		Attack:   opts.Attack,
		Upstream: opts.Upstream,
		Chain:    chain,
		Key:      key,
		Status:   status,
		Log:      log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("adversary: listen on %s: %w", opts.Listen, err)
	}
	fields := []zap.Field{zap.String("addr", ln.Addr().String()), zap.String("attack", opts.Attack)}
	if opts.Attack != adversary.ImpersonateBoard {
		fields = append(fields, zap.String("upstream", opts.Upstream))
	}
	if len(chain) > 0 {
		fields = append(fields, zap.String("own_certificate", chain[0].Subject.String()))
	}
	log.Warn("this is the adversary: a man in the middle, for teaching; every attack it makes should fail")
	log.Info("adversary listening", fields...)

	srv := &server{
		log:    log,
		limits: config.Limits{MaxConns: adversaryMaxConns, ShutdownTimeout: config.Duration(adversaryShutdownTimeout)},
		handle: func(ctx context.Context, c net.Conn, _ *tracked) { adv.Handle(ctx, c) },
	}
	if err := srv.serve(ctx, ln); err != nil {
		return fmt.Errorf("adversary: %w", err)
	}
	log.Info("adversary stopped")
	return nil
}

// adversaryIdentity reads the adversary's own certificate and key, if it was
// given them.
func adversaryIdentity(certFile, keyFile string) ([]*x509.Certificate, crypto.Signer, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, nil, errors.New("give --cert and --key together: the adversary's own certificate and its key")
	}
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--cert: %w", err)
	}
	chain, err := keys.ParseCertificatesPEM(data)
	if err != nil {
		return nil, nil, fmt.Errorf("--cert %s: %w", certFile, err)
	}
	key, err := keys.ReadPrivateKey(keyFile, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("--key: %w", err)
	}
	if !keys.SamePublicKey(chain[0].PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("--key %s is not the key of --cert %s", keyFile, certFile)
	}
	return chain, key, nil
}
