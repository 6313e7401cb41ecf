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

	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// NextKeyFile is the key of a renewal under way, in a holder's directory: it
// is saved (mode 0600) before the renewal is sent, and renamed over key.pem
// only after cert.pem holds its certificate. A start that finds it completes
// the renewal, or asks again with it: the CA answers a renewal already done
// for that key with the same certificate.
const NextKeyFile = "next-key.pem"

// RenewAt returns when a certificate is renewed: two thirds into its life.
// Until then a holder reuses it; after it, a holder renews it while it is
// valid (PROTOCOL.md §4.1), and enrolls again, with a token, once it has
// expired.
func RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(life - life/3)
}

// IdentityOptions say where a holder — the board, or a student for one SID —
// keeps its identity (key.pem, cert.pem, and root.pem beside them, in Dir)
// and how it obtains a new one. The callbacks let the caller log and retry;
// the ones that are nil do nothing.
type IdentityOptions struct {
	Dir     string
	Name    string // the SID, or the board's name
	Profile uint8  // wire.ProfileStudent (default) or wire.ProfileBoard: the usage the certificate must allow

	// Root is the root the holder trusts, settled (by an Anchor) before
	// anything is sent: the certificate must chain to it, and every request
	// names it. Either Root or Pin is required.
	Root *x509.Certificate
	// Pin, when Root is nil, is the fingerprint of the root the holder
	// trusts but was not given (Anchor.Settle): the root saved in Dir is
	// used if it has it; else an enrollment names the pin and takes the
	// CA's root from the answer once it has the pin (PROTOCOL.md §4.1).
	Pin []byte

	Client       Client
	KeyAlgorithm string // of a new key

	// Token returns the enrollment token (a board token for the board) when
	// an enrollment with a token is needed: no certificate saved, or one that
	// can no longer serve or renew. It is not called otherwise. Nil, or "",
	// means none (auth 0: only a CA with policy "open" accepts it).
	Token func() (string, error)
	// Retry runs attempt, one request to the CA, as often as the caller sees
	// fit (the student tries again while the CA answers busy); nil runs it
	// once. Every attempt certifies the same key.
	Retry func(attempt func() error) error
	// OnRenew is told why the certificate saved in Dir is not reused as it
	// is, before it is renewed or a new one is enrolled.
	OnRenew func(reason error)
	// OnRenewFailed is told why a renewal of a certificate that is still
	// valid failed; the certificate is then reused until the next attempt.
	OnRenewFailed func(err error)
	// OnRequest is called before each enrollment or renewal is sent, once
	// the key to certify is saved.
	OnRequest func()

	Now func() time.Time // the clock; default time.Now
}

// Identity is a holder's certificate, its private key and the root it chains
// to, as ReuseOrEnroll found or obtained them.
type Identity struct {
	Key         crypto.Signer
	Certificate *x509.Certificate
	Root        *x509.Certificate
	// Reused says the certificate saved in Dir still served; Renewed says it
	// was renewed now (by its key, without a token). Neither: it was
	// enrolled now.
	Reused  bool
	Renewed bool
}

// ReuseOrEnroll settles a holder's identity in o.Dir (PROTOCOL.md §4.1):
//
//   - a renewal cut short (next-key.pem) is completed, or asked for again;
//   - the saved certificate is reused while it is valid, for the key beside
//     it, chains to o.Root, and is less than two thirds into its life
//     (RenewAt);
//   - past that, a valid certificate is renewed with its key for a new key
//     pair — saved as next-key.pem before the request, renamed over key.pem
//     after cert.pem is written; if the renewal fails for a reason that may
//     pass (the CA is away, busy), the certificate is reused (OnRenewFailed);
//   - otherwise — no certificate, or one that expired or cannot renew — it
//     enrolls with o.Token: for the key in key.pem when that key is waiting
//     for its certificate (an earlier attempt's answer was lost, which the CA
//     answers again), else for a new key saved as key.pem before the
//     request.
//
// Every request names o.Root. A refusal by the CA comes back as a
// *wire.Error carrying its code and sentence.
func ReuseOrEnroll(ctx context.Context, o IdentityOptions) (*Identity, error) {
	if o.Root == nil && len(o.Pin) == 0 {
		return nil, errors.New("ca: ReuseOrEnroll needs the root the holder trusts, or its fingerprint")
	}
	if o.Profile == 0 {
		o.Profile = wire.ProfileStudent
	}
	h := holder{o: &o}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	if o.Root == nil {
		if saved, err := keys.ReadCertificate(h.path(RootFile)); err == nil && keys.MatchesFingerprint(saved, o.Pin) {
			o.Root = saved
		}
	}
	key, _ := keys.ReadPrivateKey(h.path(KeyFile), nil)      // missing or unreadable: none
	next, _ := keys.ReadPrivateKey(h.path(NextKeyFile), nil) // a renewal under way
	cert, _ := keys.ReadCertificate(h.path(CertFile))
	if next != nil && cert != nil && keys.SamePublicKey(cert.PublicKey, next.Public()) {
		// The renewal's certificate was written; only the key's rename is
		// left.
		if err := h.promote(); err != nil {
			return nil, err
		}
		key, next = next, nil
	}

	var why error // why the saved certificate is not reused as it is
	switch {
	case key == nil || cert == nil:
	case o.Root == nil:
		why = fmt.Errorf("no root with the pinned fingerprint is saved beside it in %s", o.Dir)
	default:
		now := h.now()
		why = usable(cert, key, o.Root, o.Name, usageOf(o.Profile), now)
		if why == nil && next == nil && now.Before(RenewAt(cert)) {
			return &Identity{Key: key, Certificate: cert, Root: o.Root, Reused: true}, nil
		}
		if why != nil {
			break
		}
		if next == nil {
			why = fmt.Errorf("the certificate is two thirds into its life (renewal due at %s; it expires at %s)",
				RenewAt(cert).UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
		} else {
			why = errors.New("a renewal was under way")
		}
		if o.OnRenew != nil {
			o.OnRenew(why)
		}
		id, err := h.renew(ctx, key, cert, next)
		if err == nil {
			return id, nil
		}
		if !cannotRenew(err) {
			if o.OnRenewFailed != nil {
				o.OnRenewFailed(err)
			}
			return &Identity{Key: key, Certificate: cert, Root: o.Root, Reused: true}, nil
		}
		why = fmt.Errorf("the certificate cannot renew: %w", err)
		if err := os.Remove(h.path(NextKeyFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if why != nil && o.OnRenew != nil {
		o.OnRenew(why)
	}
	// A key that matches the saved certificate belongs to it: a new
	// enrollment certifies a new key. A key without its certificate is
	// waiting for it.
	if key != nil && cert != nil && keys.SamePublicKey(cert.PublicKey, key.Public()) {
		key = nil
	}
	id, err := h.enroll(ctx, key)
	if err != nil && why != nil {
		return nil, &CannotRenewError{Name: o.Name, Reason: why, Err: err}
	}
	return id, err
}

// CannotRenewError is ReuseOrEnroll's error when the saved certificate could
// neither serve nor renew, and enrolling again failed: a student whose
// certificate expired needs a new token.
type CannotRenewError struct {
	Name   string
	Reason error // why the saved certificate could not serve or renew
	Err    error // why enrolling again failed
}

func (e *CannotRenewError) Error() string {
	var peer *wire.Error
	if errors.As(e.Err, &peer) && (peer.Code == wire.CodeTokenRequired || peer.Code == wire.CodeBoardNotAuthorized) {
		return fmt.Sprintf("the saved certificate of %s cannot be used or renewed (%v): enrolling again needs a new enrollment token (%v)", e.Name, e.Reason, e.Err)
	}
	return fmt.Sprintf("the saved certificate of %s cannot be used or renewed (%v), and enrolling again failed: %v", e.Name, e.Reason, e.Err)
}

// Unwrap returns the enrollment's error.
func (e *CannotRenewError) Unwrap() error { return e.Err }

// cannotRenew reports whether a renewal failed for good: the CA refused it
// (the certificate is revoked, expired or renewed to another key, or the
// request broke a rule), rather than not being reached.
func cannotRenew(err error) bool {
	var peer *wire.Error
	return errors.As(err, &peer) && peer.Code != wire.CodeBusy && peer.Code != wire.CodeInternal &&
		peer.Code != wire.CodeTimeout && peer.Code != wire.CodeStorage
}

// holder carries out ReuseOrEnroll's steps in one directory.
type holder struct{ o *IdentityOptions }

func (h holder) path(name string) string { return filepath.Join(h.o.Dir, name) }

func (h holder) now() time.Time {
	if h.o.Now != nil {
		return h.o.Now()
	}
	return time.Now()
}

// send runs one request through Retry and writes the root of its answer
// into root.pem and then its certificate into cert.pem.
func (h holder) send(ctx context.Context, e Enroll) (*Accepted, error) {
	if h.o.OnRequest != nil {
		h.o.OnRequest()
	}
	var acc *Accepted
	attempt := func() error {
		var err error
		acc, err = h.o.Client.Request(ctx, e)
		return err
	}
	var err error
	if h.o.Retry != nil {
		err = h.o.Retry(attempt)
	} else {
		err = attempt()
	}
	if err != nil {
		return nil, err
	}
	if err := writeRoot(h.path(RootFile), acc.Root); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(h.path(CertFile), keys.EncodeCertificatePEM(acc.Certificate.Raw), 0o644); err != nil {
		return nil, err
	}
	return acc, nil
}

// renew renews cert, whose key is key, for next — or for a new key saved as
// next-key.pem first — and moves next-key.pem over key.pem once cert.pem
// holds the new certificate.
func (h holder) renew(ctx context.Context, key crypto.Signer, cert *x509.Certificate, next crypto.Signer) (*Identity, error) {
	if next == nil {
		var err error
		if next, err = generateKey(h.path(NextKeyFile), h.o.KeyAlgorithm); err != nil {
			return nil, err
		}
	}
	csr, err := newCSR(h.o.Name, next)
	if err != nil {
		return nil, err
	}
	renewed, err := h.send(ctx, Enroll{
		SID: h.o.Name, Profile: h.o.Profile, CSR: csr, Public: next.Public(), Root: h.o.Root,
		Auth: Authorization{Renew: cert, RenewKey: key},
	})
	if err != nil {
		return nil, err
	}
	if err := h.promote(); err != nil {
		return nil, err
	}
	return &Identity{Key: next, Certificate: renewed.Certificate, Root: h.o.Root, Renewed: true}, nil
}

// promote renames next-key.pem over key.pem, durably.
func (h holder) promote() error {
	if err := os.Rename(h.path(NextKeyFile), h.path(KeyFile)); err != nil {
		return err
	}
	return durable.SyncDir(h.o.Dir)
}

// enroll enrolls key — or a new key saved as key.pem first — with the token.
func (h holder) enroll(ctx context.Context, key crypto.Signer) (*Identity, error) {
	var auth Authorization
	if h.o.Token != nil {
		token, err := h.o.Token()
		if err != nil {
			return nil, err
		}
		if token != "" {
			tk, err := TokenKey(token)
			if err != nil {
				return nil, err
			}
			defer clear(tk)
			auth.TokenKey = tk
		}
	}
	if key == nil {
		var err error
		if key, err = generateKey(h.path(KeyFile), h.o.KeyAlgorithm); err != nil {
			return nil, fmt.Errorf("enroll %s: %w", h.o.Name, err)
		}
	}
	csr, err := newCSR(h.o.Name, key)
	if err != nil {
		return nil, err
	}
	acc, err := h.send(ctx, Enroll{SID: h.o.Name, Profile: h.o.Profile, CSR: csr, Public: key.Public(), Root: h.o.Root, Pin: h.o.Pin, Auth: auth})
	if err != nil {
		return nil, err
	}
	return &Identity{Key: key, Certificate: acc.Certificate, Root: acc.Root}, nil
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
	if now.After(cert.NotAfter) {
		return fmt.Errorf("the certificate expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("the certificate does not verify: %w", err)
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
