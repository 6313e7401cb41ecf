package roles

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/internal/logging"
	"pkiboard/wire"
)

// EnrollOptions is what `pkiboard enroll` is asked to do.
type EnrollOptions struct {
	SID     string
	KeyFile string // an existing private key (PEM, e.g. from openssl); "" to generate one
	CSRFile string // an existing CSR (PEM or DER, e.g. from openssl req); "" to make one
	OutDir  string
	Board   bool   // enroll the board's certificate (profile 2) instead of a student's
	Token   string // enrollment token or board secret; "" when none is needed
}

// Enroll enrolls one SID with the CA and writes key.pem (when it generated the
// key), cert.pem and root.pem into opts.OutDir, then prints the course's line
// "SID sign finished".
func Enroll(ctx context.Context, cfg *config.Config, log *zap.Logger, opts EnrollOptions, out io.Writer) error {
	client := ca.Client{Addr: cfg.Student.CAAddr}
	o := ca.EnrollOptions{
		SID:          opts.SID,
		Token:        opts.Token,
		KeyAlgorithm: cfg.Student.KeyAlgorithm,
		OutDir:       opts.OutDir,
		// nil when student.root_fingerprint is "".
		RootFingerprint: cfg.Student.RootFingerprint,
	}
	if opts.Board {
		o.Profile = wire.ProfileBoard
		client.Addr = cfg.Board.CAAddr
	}
	if opts.KeyFile != "" {
		key, err := keys.ReadPrivateKey(opts.KeyFile, nil)
		if err != nil {
			return fmt.Errorf("enroll %s: %w", opts.SID, err)
		}
		o.Key = key
	}
	if opts.CSRFile != "" {
		csr, err := readCSR(opts.CSRFile)
		if err != nil {
			return fmt.Errorf("enroll %s: %w", opts.SID, err)
		}
		o.CSR = csr
	}
	logging.Step(log, 1, "certificate signing request sent to the CA", logging.SID(opts.SID), zap.String("ca", client.Addr))
	res, err := client.Enroll(ctx, o)
	if err != nil {
		return err
	}
	if res.FirstUse {
		warnFirstUse(log, res.Root, res.RootPath)
	}
	logging.Step(log, 2, "certificate received",
		logging.SID(opts.SID),
		zap.String("serial", keys.SerialHex(res.Certificate.SerialNumber)),
		zap.Time("not_after", res.Certificate.NotAfter),
		zap.String("dir", opts.OutDir))
	fmt.Fprintf(out, "%s sign finished\n", opts.SID)
	return nil
}

// warnFirstUse says loudly that root, saved as saved, was accepted with
// nothing to check it against.
func warnFirstUse(log *zap.Logger, root *x509.Certificate, saved string) {
	log.Warn("TRUST ON FIRST USE: the root certificate was accepted without a configured fingerprint; check it out of band and set student.root_fingerprint",
		zap.String("fingerprint", keys.FingerprintHex(root)), zap.String("saved", saved))
}

// readCSR reads a certification request file in PEM ("CERTIFICATE REQUEST",
// as openssl req writes it) or DER.
func readCSR(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if block, _ := pem.Decode(data); block != nil {
		if !strings.Contains(block.Type, "CERTIFICATE REQUEST") {
			return nil, fmt.Errorf("%s: PEM block %q is not a certificate request", path, block.Type)
		}
		return block.Bytes, nil
	}
	return data, nil
}
