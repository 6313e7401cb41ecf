package session

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// certFault is what is wrong with a peer's certificate, in the order
// PROTOCOL.md §5.1 checks: the root, then the time, then the usage.
type certFault int

const (
	faultNone         certFault = iota
	faultParse                  // the certificate does not parse (unknown-ca)
	faultUnknownCA              // not signed by the root (unknown-ca)
	faultExpired                // the certificate's notAfter has passed (cert-expired)
	faultNotYetValid            // its notBefore is still ahead (cert-expired)
	faultRootNotValid           // the root itself is not valid now (cert-expired)
	faultUsage                  // the EKU does not name the role's usage (wrong-usage)
	faultCA                     // the certificate is a CA certificate (wrong-usage)
)

// certError describes a certFault: the certificate concerned (nil for a
// parse failure; the root for faultRootNotValid) and the underlying error.
type certError struct {
	fault certFault
	cert  *x509.Certificate
	err   error
}

func (e *certError) Error() string { return fmt.Sprintf("certificate fault %d: %v", e.fault, e.err) }
func (e *certError) Unwrap() error { return e.err }

// errUsageNotNamed is the fault of a certificate whose extended key usage
// does not list the usage its role needs.
var errUsageNotNamed = errors.New("the certificate's extended key usage does not name the usage its role needs")

// namesUsage reports whether c's extended key usage extension lists usage
// itself. Go's x509 treats a certificate without the extension, or with
// anyExtendedKeyUsage, as good for every purpose; a pkiboard peer must say
// what it is for (the CA always sets exactly one usage), so such a
// certificate is of the wrong usage here.
func namesUsage(c *x509.Certificate, usage x509.ExtKeyUsage) bool {
	return slices.Contains(c.ExtKeyUsage, usage)
}

// signedBy is the outcome of checking one certificate's DER against a root:
// the parsed certificate (nil if it did not parse) and the fault, faultNone,
// faultParse or faultUnknownCA. It depends on the bytes and the root alone,
// never on the time, so it can be remembered.
type signedBy struct {
	cert  *x509.Certificate
	fault certFault
	err   error
}

// maxCachedCerts bounds certCache; when it is full it starts afresh.
const maxCachedCerts = 4096

// certCache remembers, per root and per certificate (the SHA-256 of its DER),
// whether the certificate parses and is signed by the root: a peer seen again
// — a student's next session, the board's certificate in every session a
// student process opens, a hostile hello repeated — costs a hash and a
// lookup, not a parse and a signature verification. What depends on the time
// (validity) or the role (usage) is checked on every use, on the parsed
// certificate. Revocation is the caller's, on every session.
var certCache = struct {
	sync.Mutex
	m map[certKey]*signedBy
}{m: make(map[certKey]*signedBy)}

type certKey struct {
	root [sha256.Size]byte // the root's fingerprint
	cert [sha256.Size]byte // the certificate's
}

// checkSignedByRoot parses der and checks that root signed it, directly: the
// root has pathLenConstraint 0, so no intermediate can ever be valid, and a
// session carries none (PROTOCOL.md §5.1). Nothing but the root enters the
// check, so a peer cannot make this side build paths through certificates of
// its own. The outcome is remembered per certificate.
func checkSignedByRoot(der []byte, root *x509.Certificate) *signedBy {
	key := certKey{root: sha256.Sum256(root.Raw), cert: sha256.Sum256(der)}
	certCache.Lock()
	r, ok := certCache.m[key]
	certCache.Unlock()
	if ok {
		return r
	}
	r = verifySignedByRoot(der, root)
	certCache.Lock()
	if len(certCache.m) >= maxCachedCerts {
		clear(certCache.m)
	}
	certCache.m[key] = r
	certCache.Unlock()
	return r
}

// verifySignedByRoot does checkSignedByRoot's work, from the cheapest check
// to the dearest: parse, the issuer's name, the signature.
func verifySignedByRoot(der []byte, root *x509.Certificate) *signedBy {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return &signedBy{fault: faultParse, err: err}
	}
	switch {
	case !bytes.Equal(c.RawIssuer, root.RawSubject):
		err = fmt.Errorf("issued by %q, not by the root %q", issuerName(c), subjectName(root))
	case len(c.UnhandledCriticalExtensions) > 0:
		err = fmt.Errorf("the certificate has %d critical extensions this side does not handle", len(c.UnhandledCriticalExtensions))
	default:
		err = c.CheckSignatureFrom(root)
	}
	if err != nil {
		return &signedBy{cert: c, fault: faultUnknownCA, err: err}
	}
	return &signedBy{cert: c}
}

// checkPeerCertificate checks a peer's certificate in the order of
// PROTOCOL.md §5.1: it parses and is signed by root (from certCache); it and
// the root are valid at now; its extended key usage names usage; it is not a
// CA. A certificate that fails both the root and the time is from an unknown
// CA; one that is both expired and of the wrong usage is expired. The
// certificate returned is shared with other sessions: read only.
func checkPeerCertificate(der []byte, root *x509.Certificate, now time.Time, usage x509.ExtKeyUsage) (*x509.Certificate, *certError) {
	s := checkSignedByRoot(der, root)
	if s.fault != faultNone {
		return nil, &certError{fault: s.fault, cert: s.cert, err: s.err}
	}
	c := s.cert
	switch {
	case now.After(c.NotAfter):
		return nil, &certError{fault: faultExpired, cert: c, err: errors.New("expired")}
	case now.Before(c.NotBefore):
		return nil, &certError{fault: faultNotYetValid, cert: c, err: errors.New("not yet valid")}
	case now.Before(root.NotBefore) || now.After(root.NotAfter):
		return nil, &certError{fault: faultRootNotValid, cert: root, err: errors.New("the root is not valid now")}
	case !namesUsage(c, usage):
		return nil, &certError{fault: faultUsage, cert: c, err: errUsageNotNamed}
	case c.IsCA:
		return nil, &certError{fault: faultCA, cert: c, err: errors.New("a CA certificate")}
	}
	return c, nil
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// singleCN returns the certificate's subject CN if the subject has exactly one
// CN attribute.
func singleCN(c *x509.Certificate) (string, bool) {
	n := 0
	var cn string
	for _, a := range c.Subject.Names {
		if a.Type.Equal(oidCommonName) {
			n++
			s, ok := a.Value.(string)
			if !ok {
				return "", false
			}
			cn = s
		}
	}
	return cn, n == 1
}

// utc formats t for a human as "2026-05-01 12:00 UTC".
func utc(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// issuerName names a certificate's issuer for messages.
func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// subjectName names a certificate's subject for messages.
func subjectName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}
