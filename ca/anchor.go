package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
)

// Anchor is a holder's rule for trusting the CA's root certificate, written
// once for the board, the student and `pkiboard enroll`: a root is trusted if
// it matches the pinned Fingerprint; else, if a root was configured (File)
// or saved before (Saved), it must be that one; else it is trusted on first
// use — a fact the methods report and the caller must say loudly, since
// nothing was checked. A client settles its root with Resolve before it sends
// any request (PROTOCOL.md §4.1): a wrong pin fails before a token is spent.
//
// An Anchor does not log; it reads and writes only File and Saved.
type Anchor struct {
	// Fingerprint, when set, is the SHA-256 the root's DER must have.
	Fingerprint []byte
	// File, when set, is a root certificate the operator configured (the
	// board's board.root_file): it is the root, and the CA is not asked.
	File string
	// Saved is where the root accepted earlier is kept, and where a root
	// fetched or trusted on first use is saved; "" for nowhere.
	Saved string
	// Setting names Fingerprint in refusals, as the operator configures it
	// ("board.root_fingerprint"); "" calls it "the configured one".
	Setting string
}

// pinName is how refusals name the configured fingerprint.
func (a *Anchor) pinName() string {
	if a.Setting != "" {
		return a.Setting
	}
	return "the configured one"
}

// Check reports whether root, as the CA sent it, is trusted: it must match
// Fingerprint when one is set; else the root in File, or the root in Saved if
// there is one; else it is trusted on first use (firstUse), which the caller
// must report. Check saves nothing.
func (a *Anchor) Check(root *x509.Certificate) (firstUse bool, err error) {
	if len(a.Fingerprint) > 0 {
		if !keys.MatchesFingerprint(root, a.Fingerprint) {
			return false, fmt.Errorf("the CA's root certificate has SHA-256 fingerprint %s, not %s; refusing it", keys.FingerprintHex(root), a.pinName())
		}
		return false, nil
	}
	if a.File != "" {
		known, err := keys.ReadCertificate(a.File)
		if err != nil {
			return false, err
		}
		if !bytes.Equal(known.Raw, root.Raw) {
			return false, fmt.Errorf("the CA's root certificate (%s) is not the one in %s (%s); refusing it", keys.FingerprintHex(root), a.File, keys.FingerprintHex(known))
		}
		return false, nil
	}
	if a.Saved == "" {
		return true, nil
	}
	saved, err := os.ReadFile(a.Saved)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	prev, err := keys.ParseCertificatesPEM(saved)
	if err != nil {
		return false, fmt.Errorf("%s: %w", a.Saved, err)
	}
	if !bytes.Equal(prev[0].Raw, root.Raw) {
		return false, fmt.Errorf("the CA's root certificate (%s) is not the one saved in %s (%s); refusing it — if the CA was really re-created, remove that file", keys.FingerprintHex(root), a.Saved, keys.FingerprintHex(prev[0]))
	}
	return false, nil
}

// Load returns the trusted root without asking the CA: the root in File, or
// else the one in Saved, either checked against Fingerprint. It returns nil
// and no error when there is neither (no File, nothing saved yet).
func (a *Anchor) Load() (*x509.Certificate, error) {
	for _, path := range []string{a.File, a.Saved} {
		if path == "" {
			continue
		}
		root, err := keys.ReadCertificate(path)
		if errors.Is(err, os.ErrNotExist) && path == a.Saved {
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(a.Fingerprint) > 0 && !keys.MatchesFingerprint(root, a.Fingerprint) {
			return nil, fmt.Errorf("%s has fingerprint %s, not %s", path, keys.FingerprintHex(root), a.pinName())
		}
		return root, nil
	}
	return nil, nil
}

// Resolve returns the trusted root: Load's when there is one; else the CA's,
// fetched with c, checked, and saved in Saved. firstUse reports a root
// trusted on first use, which the caller must say loudly.
func (a *Anchor) Resolve(ctx context.Context, c Client) (root *x509.Certificate, firstUse bool, err error) {
	if root, err = a.Load(); err != nil || root != nil {
		return root, false, err
	}
	if root, err = c.FetchRoot(ctx); err != nil {
		return nil, false, err
	}
	if firstUse, err = a.Check(root); err != nil {
		return nil, false, err
	}
	if err := a.Save(root); err != nil {
		return nil, false, err
	}
	return root, firstUse, nil
}

// Settle is Resolve for a client about to enroll, which need not hold the
// root when it has a pin: it returns Load's root when there is one; else,
// with a Fingerprint and no File, no root and the pin, which the request
// names and the CA's answer must match (PROTOCOL.md §4.1: one round trip);
// else Resolve's root, fetched from the CA.
func (a *Anchor) Settle(ctx context.Context, c Client) (root *x509.Certificate, pin []byte, firstUse bool, err error) {
	if root, err = a.Load(); err != nil || root != nil {
		return root, nil, false, err
	}
	if len(a.Fingerprint) > 0 && a.File == "" {
		return nil, a.Fingerprint, false, nil
	}
	root, firstUse, err = a.Resolve(ctx, c)
	return root, nil, firstUse, err
}

// Save writes root to Saved (nothing when Saved is "").
func (a *Anchor) Save(root *x509.Certificate) error {
	if a.Saved == "" {
		return nil
	}
	return durable.WriteFile(a.Saved, keys.EncodeCertificatePEM(root.Raw), 0o644)
}
