package roles

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/durable"
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
	Board   bool   // enroll the board's certificate (profile 2) with a board token, instead of a student's
	Token   string // the enrollment token (a board token with Board); "" when none is needed
}

// Enroll enrolls one SID with the CA and writes key.pem (when it generated the
// key), cert.pem and root.pem into opts.OutDir, then prints the course's line
// "SID sign finished". The root is settled first — student.root_fingerprint
// (board.root_fingerprint with Board), a root.pem already in the directory,
// or else trust on first use, said loudly — so that a wrong root costs no
// token. A key.pem already in the directory is certified again (an earlier
// attempt's answer may have been lost: the CA answers it again).
func Enroll(ctx context.Context, cfg *config.Config, log *zap.Logger, opts EnrollOptions, out io.Writer) error {
	p := studentCA(cfg.Student.CAAddr, ca.DefaultTimeout)
	p.tkey = "the enrollment's bound"
	o := ca.EnrollOptions{
		SID:          opts.SID,
		Token:        opts.Token,
		KeyAlgorithm: cfg.Student.KeyAlgorithm,
		OutDir:       opts.OutDir,
		// nil when student.root_fingerprint is "".
		RootFingerprint: cfg.Student.RootFingerprint,
	}
	setting := "student.root_fingerprint"
	if opts.Board {
		o.Profile = wire.ProfileBoard
		o.KeyAlgorithm = cfg.Board.KeyAlgorithm
		o.RootFingerprint = cfg.Board.RootFingerprint
		p.addr, p.key = cfg.Board.CAAddr, "board.ca_addr"
		setting = "board.root_fingerprint"
	}
	if dl, ok := ctx.Deadline(); ok {
		p.timeout = time.Until(dl)
	}
	client := ca.Client{
		Addr: p.addr,
		Dial: func(ctx context.Context) (net.Conn, error) { return p.dial(ctx, log, logging.SID(opts.SID)) },
		Sent: func() {
			logging.Step(log, 1, "certificate signing request sent to the CA", logging.SID(opts.SID), zap.String("ca", p.addr))
		},
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
	res, err := client.Enroll(ctx, o)
	if err != nil {
		var reach *ReachError
		if err := p.reachError(err); errors.As(err, &reach) {
			return fmt.Errorf("enroll %s: %w", opts.SID, reach)
		}
		return err
	}
	if res.FirstUse {
		warnFirstUseOf(log, res.Root, res.RootPath, setting)
	}
	logging.Step(log, 2, "certificate received",
		logging.SID(opts.SID),
		zap.String("serial", keys.SerialHex(res.Certificate.SerialNumber)),
		zap.Time("not_after", res.Certificate.NotAfter),
		zap.String("dir", opts.OutDir))
	fmt.Fprintf(out, "%s sign finished\n", opts.SID)
	if opts.Board {
		return nil
	}
	// The student role looks for the identity in student.data_dir/SID: a
	// key given with --key is put there beside its certificate; elsewhere
	// the key stays where it is, and the log says where the role looks.
	want := filepath.Join(cfg.Student.DataDir, opts.SID)
	switch {
	case !sameDir(want, opts.OutDir):
		log.Info("the student role (--role=student, history, assignments) looks for this identity elsewhere: enroll with --out there, or copy key.pem, cert.pem and root.pem there",
			logging.SID(opts.SID), zap.String("student_dir", want), zap.String("dir", opts.OutDir))
	case opts.KeyFile != "":
		if err := placeKey(opts.KeyFile, filepath.Join(opts.OutDir, ca.KeyFile)); err != nil {
			return fmt.Errorf("enroll %s: the certificate is in %s, but its key could not be put beside it: %w", opts.SID, opts.OutDir, err)
		}
	case res.KeyPath == "":
		log.Warn("the key of the --csr stays where it was made: copy it beside the certificate as key.pem (mode 0600) for the student role to use it",
			logging.SID(opts.SID), zap.String("csr", opts.CSRFile), zap.String("key", filepath.Join(opts.OutDir, ca.KeyFile)))
	}
	return nil
}

// placeKey copies the private key file from to to (mode 0600), where the
// student role looks for it beside its certificate, unless to holds it
// already.
func placeKey(from, to string) error {
	if sameFile(from, to) {
		return nil
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	defer clear(data)
	return durable.WriteFile(to, data, 0o600)
}

// sameFile reports whether a and b name one existing file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// sameDir reports whether a and b name one directory (b exists; a may not).
func sameDir(a, b string) bool {
	if sameFile(a, b) {
		return true
	}
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// warnFirstUse says loudly that root, saved as saved, was accepted with
// nothing to check it against, before any request was sent.
func warnFirstUse(log *zap.Logger, root *x509.Certificate, saved string) {
	warnFirstUseOf(log, root, saved, "student.root_fingerprint")
}

func warnFirstUseOf(log *zap.Logger, root *x509.Certificate, saved, setting string) {
	log.Warn("TRUST ON FIRST USE: the CA's root certificate was accepted without a configured fingerprint, before any request was sent; check it out of band and set "+setting,
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
