package roles

// TEMPORARY (issue 12): a bridge that gives the board its status until the
// board's watch on the CA (PROTOCOL.md §4.4: WatchRequest … StatusUpdate) is
// built. It is not part of the protocol: the board asks the CA for its status
// over the CA's local operator socket (PROTOCOL.md §7) in ca.data_dir, which
// works only where the CA and the board run on one machine, as one user, from
// one config — the demo, the end-to-end tests and the attack lab. Elsewhere
// the board holds no status and refuses every session crl-unavailable, failing
// closed. The watch replaces this whole file: statusBridge by the watch's
// status, and the "board-status" operator command of the CA by the CA's
// pushes.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// statusBridgeOp is the CA's temporary operator command that signs the
// status of a board certificate it issued.
const statusBridgeOp = "board-status"

// withStatusBridge adds the CA's "board-status" command to its operator
// commands.
func withStatusBridge(ops map[string]adminOp, auth *ca.Authority) map[string]adminOp {
	ops[statusBridgeOp] = func(_ context.Context, raw json.RawMessage) (any, error) {
		var args struct {
			Certificate []byte `json:"certificate"`
		}
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, err
		}
		cert, err := x509.ParseCertificate(args.Certificate)
		if err != nil {
			return nil, fmt.Errorf("board-status: %w", err)
		}
		status, err := auth.SignBoardStatus(cert)
		if err != nil {
			return nil, err
		}
		return status, nil // []byte: base64 in the JSON result
	}
	return ops
}

// Bounds of the bridge's fetches.
const (
	bridgeRetry   = 2 * time.Second  // after a failed fetch
	bridgeRefresh = 10 * time.Minute // at most this long between fetches
)

// statusBridgeFile is where the board keeps the last status it got, so that
// a board restarted while the CA is away staples it while it is valid.
const statusBridgeFile = "status.bin"

// statusBridge holds the board's status, fetched from the CA's operator
// socket and saved in the board's data directory, and says it is fresh.
type statusBridge struct {
	caDataDir string
	path      string            // the saved status
	cert      *x509.Certificate // the board's
	root      *x509.Certificate
	log       *zap.Logger
	now       func() time.Time

	mu     sync.Mutex
	status []byte
	parsed *wire.BoardStatus
}

func newStatusBridge(caDataDir, boardDataDir string, cert, root *x509.Certificate, log *zap.Logger) *statusBridge {
	return &statusBridge{caDataDir: caDataDir, path: filepath.Join(boardDataDir, statusBridgeFile),
		cert: cert, root: root, log: log, now: time.Now}
}

// load holds the status saved by an earlier run, if it is this board's and
// the root's.
func (s *statusBridge) load() error {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.hold(data)
}

// Status returns the held status while it is valid, else nil: the board's
// session.ServerConfig.Status.
func (s *statusBridge) Status() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parsed == nil || s.now().Unix() > int64(s.parsed.NextUpdate) {
		return nil
	}
	return s.status
}

// fetch asks the CA for a status, checks it and holds it.
func (s *statusBridge) fetch(ctx context.Context) error {
	var status []byte
	err := callAdmin(ctx, s.caDataDir, statusBridgeOp, map[string][]byte{"certificate": s.cert.Raw}, &status,
		func() (map[string]adminOp, func() error, error) {
			return nil, nil, errors.New("the CA is not running")
		})
	if err != nil {
		return err
	}
	if err := s.hold(status); err != nil {
		return err
	}
	return durable.WriteFile(s.path, status, 0o600)
}

// hold checks a status and holds it.
func (s *statusBridge) hold(status []byte) error {
	p, err := wire.ParseBoardStatus(status)
	if err != nil {
		return err
	}
	signed, err := p.SignedBytes()
	if err == nil {
		err = keys.Verify(s.root.PublicKey, signed, p.Signature)
	}
	switch {
	case err != nil:
		return fmt.Errorf("the status is not signed by the root: %w", err)
	case p.CertSHA256 != sha256.Sum256(s.cert.Raw) || !bytes.Equal(p.Serial, s.cert.SerialNumber.Bytes()):
		return errors.New("the status is for another certificate")
	case p.Revoked:
		s.log.Error("the CA says this board's certificate is revoked: students will refuse every session (board-revoked); enroll the board again")
	}
	s.mu.Lock()
	s.status, s.parsed = status, p
	s.mu.Unlock()
	return nil
}

// run fetches the status at once, then again half-way to its next_update (at
// most every bridgeRefresh), retrying every bridgeRetry while fetches fail. It
// returns when ctx ends.
func (s *statusBridge) run(ctx context.Context) {
	failing := false
	for {
		wait := bridgeRetry
		if err := s.fetch(ctx); err != nil {
			if !failing {
				s.log.Warn("TEMPORARY status bridge: cannot get the board's status from the CA's operator socket; sessions are refused until it can (crl-unavailable)",
					zap.String("ca_data_dir", s.caDataDir), zap.Error(err))
			}
			failing = true
		} else {
			if failing {
				s.log.Info("TEMPORARY status bridge: the board holds a status from the CA again")
			}
			failing = false
			s.mu.Lock()
			next := time.Unix(int64(s.parsed.NextUpdate), 0)
			s.mu.Unlock()
			wait = min(next.Sub(s.now())/2, bridgeRefresh)
			wait = max(wait, bridgeRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
