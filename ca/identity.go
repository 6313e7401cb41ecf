package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// renewBefore is how close to its expiry a saved certificate is replaced
// rather than reused.
const renewBefore = time.Hour

// IdentityOptions say where a holder — the board, or a student for one SID —
// keeps its identity (key.pem, cert.pem and root.pem in Dir) and how it
// enrolls for a new one. The callbacks let the caller log and retry; the
// ones that are nil do nothing.
type IdentityOptions struct {
	Dir     string
	Name    string // the SID, or the board's name
	Profile uint8  // wire.ProfileStudent (default) or wire.ProfileBoard: the usage the certificate must allow

	// Root, when set, is the root the certificate must chain to (the board's,
	// settled by its Anchor), and the one an enrollment must return. When it
	// is nil, the root saved in Dir serves if it matches RootFingerprint (any
	// saved root when that is nil too), and an enrollment's root is checked
	// as Client.Enroll checks it with RootFingerprint.
	Root            *x509.Certificate
	RootFingerprint []byte

	Client       Client
	KeyAlgorithm string // of a new key, when key.pem is missing or unreadable

	// Token returns the enrollment token, or the board secret, when an
	// enrollment is needed; it is not called otherwise. Nil means none.
	Token func() (string, error)
	// Retry runs attempt, one enrollment request, as often as the caller sees
	// fit (the student tries again while the CA answers busy); nil runs it
	// once. Every attempt certifies the same key.
	Retry func(attempt func() error) error
	// OnRenew is told why the certificate saved in Dir is not reused, when
	// there is one and it no longer serves, before a new one is enrolled.
	OnRenew func(reason error)
	// OnRequest is called once, when the key exists and the first enrollment
	// request is about to be sent.
	OnRequest func()

	Now func() time.Time // the clock; default time.Now
}

// Identity is a holder's certificate, its private key and the root it chains
// to, as ReuseOrEnroll found or obtained them.
type Identity struct {
	Key         crypto.Signer
	Certificate *x509.Certificate
	Root        *x509.Certificate
	// Reused says the certificate saved in Dir still served; otherwise it was
	// enrolled now, and Enrollment says how (for example whether its root was
	// trusted on first use).
	Reused     bool
	Enrollment *Enrollment
}

// ReuseOrEnroll returns the identity saved in o.Dir while it serves — a
// certificate for o.Name with the profile's usage, for the key beside it,
// chaining to the root, not expiring within the hour — and otherwise enrolls
// with o.Client for a new certificate, certifying the key saved in o.Dir or,
// when there is none that reads, a new key it saves there first (mode 0600).
// A refusal by the CA comes back as Client.Enroll returns it.
func ReuseOrEnroll(ctx context.Context, o IdentityOptions) (*Identity, error) {
	if o.Profile == 0 {
		o.Profile = wire.ProfileStudent
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	keyPath := filepath.Join(o.Dir, KeyFile)
	key, _ := keys.ReadPrivateKey(keyPath, nil) // missing or unreadable: enroll with a new one
	if key != nil {
		id, reason := o.saved(key, now())
		if id != nil {
			return id, nil
		}
		if reason != nil && o.OnRenew != nil {
			o.OnRenew(reason)
		}
	}

	var token string
	if o.Token != nil {
		var err error
		if token, err = o.Token(); err != nil {
			return nil, err
		}
	}
	if key == nil {
		var err error
		if key, err = generateKey(keyPath, o.KeyAlgorithm); err != nil {
			return nil, fmt.Errorf("enroll %s: %w", o.Name, err)
		}
	}
	fp := o.RootFingerprint
	if o.Root != nil {
		sum := keys.Fingerprint(o.Root)
		fp = sum[:]
	}
	if o.OnRequest != nil {
		o.OnRequest()
	}
	var res *Enrollment
	attempt := func() error {
		var err error
		res, err = o.Client.Enroll(ctx, EnrollOptions{
			SID:             o.Name,
			Profile:         o.Profile,
			Token:           token,
			Key:             key,
			OutDir:          o.Dir,
			RootFingerprint: fp,
		})
		return err
	}
	var err error
	if o.Retry != nil {
		err = o.Retry(attempt)
	} else {
		err = attempt()
	}
	if err != nil {
		return nil, err
	}
	return &Identity{Key: key, Certificate: res.Certificate, Root: res.Root, Enrollment: res}, nil
}

// saved returns the saved identity with key if it serves at now. Otherwise it
// returns why not — or nil when there is nothing to say: no certificate saved,
// or (without o.Root) no saved root that may be trusted.
func (o *IdentityOptions) saved(key crypto.Signer, now time.Time) (*Identity, error) {
	cert, err := keys.ReadCertificate(filepath.Join(o.Dir, CertFile))
	if err != nil {
		return nil, nil
	}
	root := o.Root
	if root == nil {
		if root, err = keys.ReadCertificate(filepath.Join(o.Dir, RootFile)); err != nil {
			return nil, nil
		}
		if len(o.RootFingerprint) > 0 && !keys.MatchesFingerprint(root, o.RootFingerprint) {
			return nil, nil
		}
	}
	if err := usable(cert, key, root, o.Name, usageOf(o.Profile), now); err != nil {
		return nil, err
	}
	return &Identity{Key: key, Certificate: cert, Root: root, Reused: true}, nil
}

// usable reports why cert (with key) cannot serve as the identity named name
// with the given usage under root at now, or nil if it can.
func usable(cert *x509.Certificate, key crypto.Signer, root *x509.Certificate, name string, usage x509.ExtKeyUsage, now time.Time) error {
	if !keys.SamePublicKey(cert.PublicKey, key.Public()) {
		return errors.New("the certificate is not for the key beside it")
	}
	if cert.Subject.CommonName != name {
		return fmt.Errorf("the certificate is for %q, not %q", cert.Subject.CommonName, name)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("the certificate does not verify: %w", err)
	}
	if cert.NotAfter.Sub(now) < renewBefore {
		return fmt.Errorf("the certificate expires at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// usageOf returns the extended key usage a profile's certificate carries.
func usageOf(profile uint8) x509.ExtKeyUsage {
	if profile == wire.ProfileBoard {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

// generateKey generates a key of algorithm alg and saves it at path (mode 0600, in
// a directory created 0700 if missing).
func generateKey(path, alg string) (crypto.Signer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	key, err := keys.Generate(alg)
	if err != nil {
		return nil, err
	}
	if err := keys.WritePrivateKey(path, key, nil); err != nil {
		return nil, err
	}
	return key, nil
}
