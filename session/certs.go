package session

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// chainFault is what is wrong with a peer's certificate chain, in the order
// PROTOCOL.md §5.1 checks: the chain, then the time, then the usage.
type chainFault int

const (
	faultNone          chainFault = iota
	faultParse                    // a certificate does not parse (unknown-ca)
	faultUnknownCA                // no chain to the roots (unknown-ca)
	faultExpired                  // the leaf's notAfter has passed (cert-expired)
	faultNotYetValid              // the leaf's notBefore is still ahead (cert-expired)
	faultChainNotValid            // a CA certificate of the chain is not valid now (cert-expired)
	faultUsage                    // the EKU lacks the role's usage (wrong-usage)
	faultCA                       // the leaf is a CA certificate (wrong-usage)
)

// chainError describes a chainFault: the certificate concerned (nil for a
// parse failure) and the underlying error.
type chainError struct {
	fault chainFault
	cert  *x509.Certificate
	err   error
}

func (e *chainError) Error() string { return fmt.Sprintf("certificate fault %d: %v", e.fault, e.err) }
func (e *chainError) Unwrap() error { return e.err }

// parseChain parses a peer's certificates, leaf first.
func parseChain(der [][]byte) ([]*x509.Certificate, *chainError) {
	certs := make([]*x509.Certificate, 0, len(der))
	for i, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, &chainError{fault: faultParse, err: fmt.Errorf("certificate %d: %w", i, err)}
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// verifyChain checks that certs[0] chains to roots through the others (only as
// candidate intermediates), is valid at now, has usage in its extended key
// usage and is not a CA. It reports the first fault in the order of
// PROTOCOL.md §5.1: a certificate that is both from an unknown CA and expired
// is from an unknown CA; one that is both expired and of the wrong usage is
// expired.
//
// The successful path costs one x509 verification; only a failure pays for the
// extra verifications that tell the faults apart. It returns the verified
// chain, from the leaf to a root.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) ([]*x509.Certificate, *chainError) {
	leaf := certs[0]
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	verified, err := leaf.Verify(opts)
	if err == nil {
		if leaf.IsCA {
			return nil, &chainError{fault: faultCA, cert: leaf, err: errors.New("the leaf is a CA certificate")}
		}
		if !namesUsage(leaf, usage) {
			return nil, &chainError{fault: faultUsage, cert: leaf, err: errUsageNotNamed}
		}
		return verified[0], nil
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage {
		// Chains were found and every one was valid now; only the usage fails.
		return nil, &chainError{fault: faultUsage, cert: leaf, err: err}
	}

	// Did it fail only because of the time? Verify again, with any usage, at
	// the two ends of the leaf's validity: if a chain is found, then some
	// certificate of it is not valid now.
	opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	for _, at := range []time.Time{leaf.NotBefore, leaf.NotAfter} {
		opts.CurrentTime = at
		chains, verr := leaf.Verify(opts)
		if verr != nil {
			continue
		}
		for _, c := range chains[0] {
			if !now.Before(c.NotBefore) && !now.After(c.NotAfter) {
				continue
			}
			switch {
			case c != leaf:
				return nil, &chainError{fault: faultChainNotValid, cert: c, err: err}
			case now.After(c.NotAfter):
				return nil, &chainError{fault: faultExpired, cert: c, err: err}
			default:
				return nil, &chainError{fault: faultNotYetValid, cert: c, err: err}
			}
		}
	}
	return nil, &chainError{fault: faultUnknownCA, cert: leaf, err: err}
}

// errUsageNotNamed is the fault of a leaf that x509 verification accepts only
// because it names no usage of its own.
var errUsageNotNamed = errors.New("the leaf's extended key usage does not name the usage its role needs")

// namesUsage reports whether leaf's extended key usage extension lists usage
// itself. Go's x509 treats a certificate without the extension, or with
// anyExtendedKeyUsage, as good for every purpose; a pkiboard peer must say
// what it is for (the CA always sets exactly one usage), so such a leaf is of
// the wrong usage here. Intermediates are left to x509's own nesting rule.
func namesUsage(leaf *x509.Certificate, usage x509.ExtKeyUsage) bool {
	return slices.Contains(leaf.ExtKeyUsage, usage)
}

// maxCachedChains bounds the verified-chain cache; when it is full it starts
// afresh.
const maxCachedChains = 4096

// chainCache remembers the chains that verified, by their exact DER bytes, the
// root pool and the usage, so that a peer seen again — a student's next
// session, the board's certificate in every session a student process opens —
// costs neither parsing nor a signature verification. The validity window of
// the whole verified chain is kept and checked against the current time on
// every use. A root pool must not change while sessions use it (the configs
// say so), so a chain that verified against it still does; revocation is
// checked on every session by the caller, not here.
var chainCache = struct {
	sync.Mutex
	m map[chainKey]*cachedChain
}{m: make(map[chainKey]*cachedChain)}

type chainKey struct {
	roots *x509.CertPool
	usage x509.ExtKeyUsage
	sum   [sha256.Size]byte // over each certificate's length and bytes
}

type cachedChain struct {
	certs               []*x509.Certificate // as the peer sent them, parsed
	notBefore, notAfter time.Time           // when every certificate of the verified chain is valid
}

// checkPeerChain parses and checks a peer's certificates (parseChain and
// verifyChain), answering from chainCache when the same bytes verified before.
// The certificates returned are shared with other sessions: read only.
func checkPeerChain(der [][]byte, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) ([]*x509.Certificate, *chainError) {
	h := sha256.New()
	var n [4]byte
	for _, d := range der {
		binary.BigEndian.PutUint32(n[:], uint32(len(d)))
		h.Write(n[:])
		h.Write(d)
	}
	key := chainKey{roots: roots, usage: usage}
	h.Sum(key.sum[:0])
	chainCache.Lock()
	c, ok := chainCache.m[key]
	chainCache.Unlock()
	if ok && !now.Before(c.notBefore) && !now.After(c.notAfter) {
		return c.certs, nil
	}
	certs, cerr := parseChain(der)
	if cerr != nil {
		return nil, cerr
	}
	verified, cerr := verifyChain(certs, roots, now, usage)
	if cerr != nil {
		return nil, cerr
	}
	c = &cachedChain{certs: certs, notBefore: verified[0].NotBefore, notAfter: verified[0].NotAfter}
	for _, v := range verified[1:] {
		if v.NotBefore.After(c.notBefore) {
			c.notBefore = v.NotBefore
		}
		if v.NotAfter.Before(c.notAfter) {
			c.notAfter = v.NotAfter
		}
	}
	chainCache.Lock()
	if len(chainCache.m) >= maxCachedChains {
		clear(chainCache.m)
	}
	chainCache.m[key] = c
	chainCache.Unlock()
	return certs, nil
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
