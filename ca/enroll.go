package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"pkiboard/internal/keys"
	"pkiboard/internal/logging"
	"pkiboard/wire"
)

// Request is one enrollment request as the CA exchange carries it
// (PROTOCOL.md §4.2, less the version, which the Server checks), with the
// client's address.
type Request struct {
	Profile uint8  // wire.ProfileStudent or wire.ProfileBoard
	SID     string // the student ID, or the board's name for profile 2
	CSR     []byte // PKCS#10, DER
	// Root is the fingerprint of the root the client trusts: this CA's, or
	// the request is refused before anything is spent.
	Root [wire.RootFingerprintLen]byte
	// Auth is wire.AuthNone, wire.AuthToken or wire.AuthRenewal; TokenKey
	// (auth 1), Certificate (auth 2) and Signature (over the binding,
	// wire.EnrollBinding) authorize the request.
	Auth        uint8
	TokenKey    []byte
	Certificate []byte
	Signature   []byte
	Peer        string // the client's address, for the record and the log
}

// Issued is the certificate Enroll answers with, stored durably.
type Issued struct {
	Certificate *x509.Certificate
	// Again says the request's token, or its renewal, had already produced
	// this certificate for the CSR's public key: it is answered again, and
	// nothing was spent or issued now (PROTOCOL.md §4.1).
	Again bool
	// Renewed is the serial of the certificate this one superseded (auth 2),
	// revoked in the transaction that stored this one; nil otherwise.
	Renewed *big.Int
}

// grant is what an accepted authorization leaves the commit to do.
type grant struct {
	auth     uint8
	tokenKey []byte            // auth 1: the token to spend
	renewed  *x509.Certificate // auth 2: the certificate to supersede
}

// checked is the outcome of the checks of PROTOCOL.md §4.2 up to step 8.
type checked struct {
	csr    *x509.CertificateRequest
	grant  grant
	proven bool              // step 6 passed with a token or a certificate: the peer proved possession of its key
	again  *x509.Certificate // step 8 found this certificate already issued for the CSR's key
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// Enroll checks req in the order of PROTOCOL.md §4.2 and, if it passes,
// issues a certificate and stores it — with the spending of the token, or
// the supersession of the renewed certificate — in one durable transaction
// before returning it. A request already served for the CSR's key is
// answered with the same certificate (Issued.Again).
//
// A refusal is returned as a *wire.Refusal carrying the protocol's code and a
// sentence for the client. A refusal of a peer that proved nothing (steps 0
// to 6, or a request without authorization) is only counted and logged at
// most once a second (AnonymousRefusals); a later one is stored (Refusals)
// and logged. Any other error is the CA's own failure.
func (a *Authority) Enroll(ctx context.Context, req Request) (*Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ca: enroll: %w", err)
	}
	now := a.now()
	c, refusal, err := a.check(req, now)
	if err != nil {
		return nil, a.failed(req, err)
	}
	if refusal != nil {
		return nil, a.refuse(req, now, refusal, c.proven)
	}
	if c.again != nil {
		return &Issued{Certificate: c.again, Again: true}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ca: enroll: %w", err)
	}
	for range 3 {
		cert, err := a.issue(c.csr.PublicKey, req, now)
		if err != nil {
			return nil, a.failed(req, err)
		}
		iss, refusal, err := a.commit(cert, req, c.grant, now)
		if errors.Is(err, errSerialTaken) {
			a.log.Warn("random serial already issued; drawing another", zap.String("serial", keys.SerialHex(cert.SerialNumber)))
			continue
		}
		if err != nil {
			return nil, a.failed(req, fmt.Errorf("ca: store certificate: %w", err))
		}
		if refusal != nil {
			// A concurrent request spent the token, or renewed the
			// certificate, after check; commit stored the refusal.
			a.logRefusal(req, refusal)
			return nil, provenRefusal{refusal}
		}
		return iss, nil
	}
	return nil, a.failed(req, errors.New("ca: could not draw an unused serial number"))
}

// check applies the checks of PROTOCOL.md §4.2 in order — everything about
// the request and its authorization before any work on the CSR — and returns
// the parsed CSR and what the commit must do, or the first refusal.
func (a *Authority) check(req Request, now time.Time) (*checked, *wire.Refusal, error) {
	c := &checked{grant: grant{auth: req.Auth}}

	// 1. The profile.
	if req.Profile != wire.ProfileStudent && req.Profile != wire.ProfileBoard {
		return c, wire.Refusef(wire.CodeBadProfile, "profile %d is unknown; use %d for a student certificate or %d for the board's", req.Profile, wire.ProfileStudent, wire.ProfileBoard), nil
	}

	// 2. The authorization fits the profile and the policy.
	switch {
	case req.Auth > wire.AuthRenewal:
		return c, wire.Refusef(wire.CodeMalformed, "auth %d is not 0 (none), 1 (token) or 2 (renewal)", req.Auth), nil
	case req.Auth != wire.AuthNone:
	case req.Profile == wire.ProfileBoard:
		return c, wire.Refusef(wire.CodeBoardNotAuthorized, "a board certificate needs a one-time board token (%s in the CA's data directory, or one from `pkiboard token --board`), or the board's current certificate to renew", BoardTokenFile), nil
	case a.o.Policy == PolicyToken:
		return c, wire.Refusef(wire.CodeTokenRequired, "the CA requires an enrollment token for SID %s; ask the course staff for one", quote(req.SID)), nil
	}

	// 3. The SID, or the board's name.
	if req.Profile == wire.ProfileBoard {
		if req.SID != a.o.BoardName {
			return c, wire.Refusef(wire.CodeBoardNotAuthorized, "a board certificate is issued only for the board name %q, not %s", a.o.BoardName, quote(req.SID)), nil
		}
	} else if len(req.SID) > wire.MaxSIDLen || !utf8.ValidString(req.SID) || !a.sidRE.MatchString(req.SID) {
		return c, wire.Refusef(wire.CodeBadSID, "the SID %s does not match the CA's SID pattern %s; check the SID", quote(req.SID), a.o.SIDPattern), nil
	} else if req.SID == a.o.BoardName {
		// A student certificate named like the board would confuse anyone
		// who reads a CN without the EKU.
		return c, wire.Refusef(wire.CodeBadSID, "the name %q is reserved for the board; check the SID", req.SID), nil
	}

	// 4. The roster.
	if req.Profile == wire.ProfileStudent && a.roster != nil && !a.roster.Contains(req.SID) {
		return c, wire.Refusef(wire.CodeNotOnRoster, "the SID %q is not on the course roster; ask the course staff to add it", req.SID), nil
	}

	// 5. The root the client trusts is this CA's.
	if req.Root != a.rootFP {
		return c, wire.Refusef(wire.CodeWrongRoot, "the request names the root %x, but this CA's root is %x: the client trusts another root (check root_fingerprint); nothing was spent", req.Root, a.rootFP), nil
	}

	// 6. The authorization, before any work on the CSR.
	binding := wire.EnrollBinding(req.Auth, req.Profile, req.SID, req.Root, req.CSR)
	var tok tokenRecord
	var renewed certRecord
	switch req.Auth {
	case wire.AuthToken:
		var problem tokenProblem
		err := a.db.View(func(tx *sql.Tx) error {
			var err error
			tok, problem, err = lookupToken(tx, req.TokenKey, req.SID, req.Profile, now)
			return err
		})
		if err != nil {
			return c, nil, fmt.Errorf("ca: look up token: %w", err)
		}
		if (problem == tokenOK || problem == tokenCancelled) && (len(req.TokenKey) != ed25519.PublicKeySize || !ed25519.Verify(req.TokenKey, binding, req.Signature)) {
			problem = tokenBadSignature
		}
		if problem != tokenOK {
			return c, tokenRefusal(problem, tok, req.SID, req.Profile), nil
		}
		c.grant.tokenKey = req.TokenKey
	case wire.AuthRenewal:
		cert, rec, refusal, err := a.checkRenewal(req, binding, now)
		if err != nil || refusal != nil {
			return c, refusal, err
		}
		c.grant.renewed, renewed = cert, rec
	}
	c.proven = req.Auth != wire.AuthNone

	// 7. The CSR: it parses, proves possession of its key, has a key we
	// accept and the subject CN=sid.
	if len(req.CSR) == 0 || len(req.CSR) > wire.MaxCSRLen {
		return c, wire.Refusef(wire.CodeBadCSR, "the CSR is %d bytes; it must be 1 to %d bytes of DER", len(req.CSR), wire.MaxCSRLen), nil
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return c, badCSR(req.CSR, err), nil
	}
	if err := csr.CheckSignature(); err != nil {
		return c, wire.Refusef(wire.CodeBadCSRSignature, "the CSR's signature does not verify with the public key it carries (%v); make a new CSR signed with the private key you hold", err), nil
	}
	if r := checkKey(csr.PublicKey); r != nil {
		return c, r, nil
	}
	if r := checkSubject(csr.RawSubject, req.SID); r != nil {
		return c, r, nil
	}
	c.csr = csr

	// 8. Spending: a token unused, a certificate not yet renewed — or
	// spent on this very key, which is then answered again. An unused
	// token (step 6 read it) and no authorization need no read.
	if req.Auth == wire.AuthNone || (req.Auth == wire.AuthToken && tok.UsedAt.IsZero()) {
		return c, nil, nil
	}
	var refusal *wire.Refusal
	err = a.db.View(func(tx *sql.Tx) error {
		var err error
		switch req.Auth {
		case wire.AuthToken:
			c.again, refusal, err = tokenSpent(tx, tok, csr.PublicKey, req)
		case wire.AuthRenewal:
			c.again, refusal, err = renewalDone(tx, renewed, c.grant.renewed, csr.PublicKey)
		}
		return err
	})
	if err != nil {
		return c, nil, fmt.Errorf("ca: look up the earlier certificate: %w", err)
	}
	return c, refusal, nil
}

// checkRenewal is step 6 for a renewal (auth 2): the certificate parses, is
// one this CA issued (the same bytes under its serial), for this SID and
// profile, valid now and not revoked — unless revoked by its own renewal,
// which step 8 judges — and the request's signature verifies with its key.
func (a *Authority) checkRenewal(req Request, binding []byte, now time.Time) (*x509.Certificate, certRecord, *wire.Refusal, error) {
	var rec certRecord
	cert, err := x509.ParseCertificate(req.Certificate)
	if err != nil {
		return nil, rec, wire.Refusef(wire.CodeBadRenewal, "the certificate to renew does not parse as an X.509 certificate; enroll with a token"), nil
	}
	found := false
	err = a.db.View(func(tx *sql.Tx) error {
		var err error
		rec, found, err = getCert(tx, keys.SerialHex(cert.SerialNumber))
		return err
	})
	if err != nil {
		return nil, rec, nil, fmt.Errorf("ca: look up the certificate to renew: %w", err)
	}
	serial := keys.SerialHex(cert.SerialNumber)
	switch {
	case !found || !bytes.Equal(rec.DER, req.Certificate):
		return nil, rec, wire.Refusef(wire.CodeBadRenewal, "certificate %s is not one this CA issued; enroll with a token", serial), nil
	case rec.SID != req.SID || rec.Profile != req.Profile:
		return nil, rec, wire.Refusef(wire.CodeBadRenewal, "certificate %s is for %q (profile %d), not %s (profile %d); a renewal keeps the name and profile", serial, rec.SID, rec.Profile, quote(req.SID), req.Profile), nil
	case rec.Status == StatusRevoked && rec.SupersededBy == "":
		return nil, rec, wire.Refusef(wire.CodeBadRenewal, "certificate %s was revoked at %s (%s) and cannot renew; enroll with a token", serial, rec.RevokedAt.Format(timeLayout), ReasonName(rec.Reason)), nil
	case now.Before(cert.NotBefore) || now.After(cert.NotAfter):
		return nil, rec, wire.Refusef(wire.CodeBadRenewal, "certificate %s is not valid now (it expires at %s) and cannot renew; enroll with a token", serial, cert.NotAfter.UTC().Format(timeLayout)), nil
	}
	if err := keys.Verify(cert.PublicKey, binding, req.Signature); err != nil {
		return nil, rec, wire.Refusef(wire.CodeBadRenewal, "the renewal's signature does not verify with the key of certificate %s; sign the request with the certificate's current key", serial), nil
	}
	return cert, rec, nil, nil
}

// tokenSpent is step 8 for a token: nil if it is unused; the certificate it
// was spent on if that certifies pub (the request is answered again); else
// token-used.
func tokenSpent(tx *sql.Tx, rec tokenRecord, pub crypto.PublicKey, req Request) (*x509.Certificate, *wire.Refusal, error) {
	if rec.UsedAt.IsZero() {
		return nil, nil, nil
	}
	prior, err := storedCertificate(tx, rec.Serial)
	if err != nil {
		return nil, nil, err
	}
	if prior != nil && keys.SamePublicKey(prior.PublicKey, pub) {
		return prior, nil, nil
	}
	return nil, usedRefusal(rec, req.SID, req.Profile), nil
}

// renewalDone is step 8 for a renewal: same-key when pub is the renewed
// certificate's; when it was renewed already, the successor if that
// certifies pub (answered again), else bad-renewal.
func renewalDone(tx *sql.Tx, rec certRecord, renewed *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, *wire.Refusal, error) {
	serial := rec.Serial
	if keys.SamePublicKey(renewed.PublicKey, pub) {
		return nil, wire.Refusef(wire.CodeSameKey, "the CSR carries the key of certificate %s; a renewal certifies a new key pair: make a new key and CSR", serial), nil
	}
	if rec.SupersededBy == "" {
		return nil, nil, nil
	}
	next, err := storedCertificate(tx, rec.SupersededBy)
	if err != nil {
		return nil, nil, err
	}
	if next != nil && keys.SamePublicKey(next.PublicKey, pub) {
		return next, nil, nil
	}
	return nil, wire.Refusef(wire.CodeBadRenewal, "certificate %s was already renewed (by certificate %s) for another key; renew that one, or enroll with a token", serial, rec.SupersededBy), nil
}

// storedCertificate returns the certificate stored under a hex serial, or nil
// if there is none.
func storedCertificate(tx *sql.Tx, serialHex string) (*x509.Certificate, error) {
	rec, found, err := getCert(tx, serialHex)
	if err != nil || !found {
		return nil, err
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, fmt.Errorf("ca: stored certificate %s does not parse: %w", serialHex, err)
	}
	return cert, nil
}

// badCSR explains why a CSR does not parse. The encoding/asn1 details are
// left out: they say nothing a student can act on.
func badCSR(csr []byte, err error) *wire.Refusal {
	if bytes.HasPrefix(csr, []byte("-----BEGIN")) {
		return wire.Refusef(wire.CodeBadCSR, "the CSR is PEM text; send it in DER (openssl req -outform DER)")
	}
	cause := ""
	if msg := err.Error(); strings.HasPrefix(msg, "x509: ") && !strings.Contains(msg, "asn1") {
		cause = " (" + msg + ")"
	}
	return wire.Refusef(wire.CodeBadCSR, "the CSR is not a PKCS#10 certification request in DER%s; make a new one (openssl req -new -outform DER)", cause)
}

// checkKey allows the keys keys.Supported accepts — RSA keys of
// keys.MinRSABits..keys.MaxRSABits and ECDSA keys on P-256 and P-384: what the
// board's key transport (RSA-OAEP, HPKE DHKEM(P-256) and DHKEM(P-384)) can
// encrypt to.
func checkKey(pub crypto.PublicKey) *wire.Refusal {
	err := keys.Supported(pub)
	if err == nil {
		return nil
	}
	allowed := fmt.Sprintf("use RSA of %d to %d bits, or ECDSA on P-256 or P-384", keys.MinRSABits, keys.MaxRSABits)
	var u *keys.UnsupportedKeyError
	if errors.As(err, &u) && (u.Bits != 0 || u.Curve != "") {
		// An RSA key of the wrong size or an ECDSA key on the wrong curve.
		return wire.Refusef(wire.CodeWeakKey, "the CSR's key is %s; %s", keys.Describe(pub), allowed)
	}
	if _, ok := pub.(ed25519.PublicKey); ok {
		return wire.Refusef(wire.CodeWeakKey, "the CSR's key is Ed25519, which the board cannot encrypt a session key to; %s", allowed)
	}
	return wire.Refusef(wire.CodeWeakKey, "the CSR's key type %s is not accepted; %s", keys.Describe(pub), allowed)
}

// checkSubject requires the subject to be exactly one RDN holding exactly
// one attribute, commonName, whose string value is sid byte for byte.
func checkSubject(raw []byte, sid string) *wire.Refusal {
	var rdns pkix.RDNSequence
	rest, err := asn1.Unmarshal(raw, &rdns)
	if err == nil && len(rest) == 0 && len(rdns) == 1 && len(rdns[0]) == 1 && rdns[0][0].Type.Equal(oidCommonName) {
		if cn, ok := rdns[0][0].Value.(string); ok && cn == sid {
			return nil
		}
	}
	subject := "empty"
	if err != nil || len(rest) != 0 {
		subject = "not a valid name"
	} else if len(rdns) > 0 {
		subject = quote(rdns.String())
	}
	return wire.Refusef(wire.CodeCNMismatch, "the CSR's subject is %s but the request is for SID %q; make the CSR with the subject CN=%s and nothing else", subject, sid, sid)
}

// quote returns s quoted for a message, cut to a length that fits one.
func quote(s string) string {
	const max = 96
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

// issue builds and signs a certificate for pub. The template is fresh: the
// CSR contributes only its public key (pub) and the subject, which check
// has found to be exactly CN=req.SID. Every extension the CSR asked for is
// ignored.
func (a *Authority) issue(pub crypto.PublicKey, req Request, now time.Time) (*x509.Certificate, error) {
	serial, err := newSerial(a.o.Rand)
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(a.o.CertValidity)
	if notAfter.After(a.root.NotAfter) {
		notAfter = a.root.NotAfter
	}
	notBefore := now.Add(-backdate)
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("ca: the root certificate expires at %s; nothing can be issued", a.root.NotAfter.Format(timeLayout))
	}
	eku := x509.ExtKeyUsageClientAuth
	if req.Profile == wire.ProfileBoard {
		eku = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.SID},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              keyUsage(pub, req.Profile),
		ExtKeyUsage:           []x509.ExtKeyUsage{eku},
		BasicConstraintsValid: true, // CA:FALSE, critical
		IsCA:                  false,
		SubjectKeyId:          ski,
		// AuthorityKeyId: CreateCertificate copies the root's SubjectKeyId.
		SignatureAlgorithm: a.sigAlg,
	}
	der, err := x509.CreateCertificate(a.o.Rand, tmpl, a.root, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign certificate: %w", err)
	}

	// Defence in depth: what goes out must parse, carry the key that was asked
	// for, name the root as its issuer, and fit the root's validity.
	// CreateCertificate has already verified the signature it made against
	// the root key's public half (crypto/x509 checks what its signer
	// produced), so a full chain verification here would only repeat that
	// ECDSA or RSA verification; the structural checks are what remain.
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse the issued certificate: %w", err)
	}
	switch {
	case !keys.SamePublicKey(cert.PublicKey, pub):
		return nil, errors.New("ca: the issued certificate does not carry the CSR's key")
	case !bytes.Equal(cert.RawIssuer, a.root.RawSubject) || !bytes.Equal(cert.AuthorityKeyId, a.root.SubjectKeyId):
		return nil, errors.New("ca: the issued certificate does not name the root as its issuer")
	case cert.NotBefore.Before(a.root.NotBefore) || cert.NotAfter.After(a.root.NotAfter):
		return nil, errors.New("ca: the issued certificate's validity is not within the root's")
	case cert.IsCA || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != eku:
		return nil, errors.New("ca: the issued certificate's usage is not the profile's")
	}
	return cert, nil
}

// keyUsage returns the key usages of a certificate for pub.
//
// Every certificate gets digitalSignature: the student signs the end of the
// submission, the board signs the handshake transcript and receipts. A
// student's key also receives the session key (PROTOCOL.md §5.1): an RSA key
// by RSA-OAEP, which is keyEncipherment, and an EC key by HPKE with
// DHKEM(P-256/P-384), an ephemeral-static ECDH with the certified key,
// which RFC 5280 §4.2.1.3 calls keyAgreement. The board's key only signs,
// so its certificate allows nothing more.
func keyUsage(pub crypto.PublicKey, profile uint8) x509.KeyUsage {
	ku := x509.KeyUsageDigitalSignature
	if profile != wire.ProfileStudent {
		return ku
	}
	switch pub.(type) {
	case *rsa.PublicKey:
		ku |= x509.KeyUsageKeyEncipherment
	case *ecdsa.PublicKey:
		ku |= x509.KeyUsageKeyAgreement
	}
	return ku
}

// commit stores the certificate and the accepted decision in one durable
// transaction, with the spending of the token (auth 1) or the supersession of
// the renewed certificate (auth 2), checked again inside the transaction. If
// a concurrent request spent the token or renewed the certificate after
// check, it answers that request's certificate when it is for the same key,
// and otherwise stores the refusal and returns it. A renewal publishes the
// new CRL (which lists the superseded certificate) once the transaction is
// durable.
func (a *Authority) commit(cert *x509.Certificate, req Request, g grant, now time.Time) (*Issued, *wire.Refusal, error) {
	serial := keys.SerialHex(cert.SerialNumber)
	var renewed string
	if g.auth == wire.AuthRenewal {
		renewed = keys.SerialHex(g.renewed.SerialNumber)
		// CRL numbers and crl.pem are written in order under crlMu, as
		// Revoke does.
		a.crlMu.Lock()
		defer a.crlMu.Unlock()
	}
	var (
		iss     *Issued
		refusal *wire.Refusal
		number  *big.Int
		entries []x509.RevocationListEntry
	)
	fn := func(tx *sql.Tx) error {
		iss = &Issued{Certificate: cert}
		var again *x509.Certificate
		var err error
		switch g.auth {
		case wire.AuthToken:
			var tok tokenRecord
			var problem tokenProblem
			if tok, problem, err = lookupToken(tx, g.tokenKey, req.SID, req.Profile, now); err != nil {
				return err
			}
			if problem != tokenOK {
				refusal = tokenRefusal(problem, tok, req.SID, req.Profile)
				break
			}
			again, refusal, err = tokenSpent(tx, tok, cert.PublicKey, req)
		case wire.AuthRenewal:
			var old certRecord
			if old, _, err = getCert(tx, renewed); err != nil {
				return err
			}
			if again, refusal, err = renewalDone(tx, old, g.renewed, cert.PublicKey); err != nil || again != nil || refusal != nil {
				break
			}
			if old.Status == StatusRevoked {
				refusal = wire.Refusef(wire.CodeBadRenewal, "certificate %s was revoked at %s (%s) and cannot renew; enroll with a token", renewed, old.RevokedAt.Format(timeLayout), ReasonName(old.Reason))
			}
		}
		switch {
		case err != nil:
			return err
		case again != nil:
			iss = &Issued{Certificate: again, Again: true}
			return nil
		case refusal != nil:
			return putRefusal(tx, refusedDecision(req, now, refusal), a.refusalBound)
		}
		// The certificate first: the token's and the renewed certificate's
		// rows refer to it.
		if err := insertCert(tx, cert, req, renewed, now); err != nil {
			return err
		}
		switch g.auth {
		case wire.AuthToken:
			return spendToken(tx, g.tokenKey, now, serial)
		case wire.AuthRenewal:
			if err := supersede(tx, renewed, serial, now); err != nil {
				return err
			}
			iss.Renewed = g.renewed.SerialNumber
			number, entries, err = nextCRL(tx, now)
			return err
		}
		return nil
	}
	if err := a.db.Update(fn); err != nil {
		return nil, nil, err
	}
	if refusal != nil {
		return nil, refusal, nil
	}
	if iss.Renewed != nil {
		a.log.Info("certificate renewed; the old one is revoked as superseded", logging.SID(req.SID),
			zap.String("serial", serial), zap.String("renewed", renewed))
		// The certificate is stored: the new CRL, which lists the renewed
		// one, is served and pushed to the watching boards at once; one that
		// cannot be issued now is logged, and Run and CRLPEM try again
		// (crlDirty).
		a.crlDirty = true
		if _, err := a.publishCRL(number, entries, now); err != nil {
			a.log.Error("certificate renewed, but the new CRL could not be issued (the CA tries again)", zap.Error(err))
		}
	}
	return iss, nil, nil
}

// supersede revokes the renewed certificate with reason superseded and
// records which certificate superseded it, stored by the caller in the same
// transaction.
func supersede(tx *sql.Tx, old, by string, now time.Time) error {
	res, err := tx.Exec(`UPDATE certificates SET status = 'revoked', revoked_at = ?, reason = ?, superseded_by = ?
		WHERE serial = ? AND status = 'valid'`, sqlTime(now), ReasonSuperseded, by, old)
	if err != nil {
		return fmt.Errorf("ca: supersede certificate %s: %w", old, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("ca: supersede certificate %s: it is no longer valid", old) // the caller checked it in this transaction
	}
	return nil
}

func refusedDecision(req Request, now time.Time, r *wire.Refusal) decisionRecord {
	sid := req.SID
	if len(sid) > wire.MaxSIDLen {
		sid = sid[:wire.MaxSIDLen]
	}
	return decisionRecord{
		Time: now, SID: sid, Peer: req.Peer, Profile: req.Profile, Code: r.Code, Reason: r.Text,
	}
}

// refuse handles a refusal found before the commit and returns it. A peer
// that proved nothing (proven false) costs the CA no disk: its refusal is
// counted, and logged at most once a second. A peer that proved possession
// of a token or a certificate has its refusal stored in the bounded ring and
// logged; a failure to store it is logged, and the refusal returned all the
// same.
func (a *Authority) refuse(req Request, now time.Time, r *wire.Refusal, proven bool) error {
	if !proven {
		a.noteAnonymous(r, req.Peer)
		return r
	}
	d := refusedDecision(req, now, r)
	if err := a.db.Update(func(tx *sql.Tx) error { return putRefusal(tx, d, a.refusalBound) }); err != nil {
		a.log.Error("cannot record the refusal", logging.SID(d.SID), zap.Error(err))
	}
	a.logRefusal(req, r)
	return provenRefusal{r}
}

// provenRefusal is Enroll's refusal of a request whose peer proved
// possession of a token's or a certificate's key (step 6 of PROTOCOL.md §4.2
// passed): it was recorded, and it is no stranger's failure. It unwraps to
// the *wire.Refusal.
type provenRefusal struct{ *wire.Refusal }

func (p provenRefusal) Unwrap() error { return p.Refusal }

// RefusalProven reports whether err is Enroll's refusal of a request whose
// peer had proven possession of a token's or a certificate's key, so that a
// server limiting strangers does not count it against the peer's source.
func RefusalProven(err error) bool {
	var p provenRefusal
	return errors.As(err, &p)
}

// logRefusal logs a refusal of a peer that proved possession of a token or
// a certificate: at warn level when it may be an attack on the CA (a forged
// CSR, a token spent on another key, a renewal of a certificate already
// renewed), at info level when it is a client's mistake.
func (a *Authority) logRefusal(req Request, r *wire.Refusal) {
	level := zapcore.InfoLevel
	switch r.Code {
	case wire.CodeBadCSRSignature, wire.CodeTokenUsed, wire.CodeBadRenewal:
		level = zapcore.WarnLevel
	}
	sid := req.SID
	if len(sid) > wire.MaxSIDLen {
		sid = sid[:wire.MaxSIDLen]
	}
	if ce := a.log.Check(level, "enrollment refused"); ce != nil {
		ce.Write(logging.SID(sid), zap.String("peer", req.Peer), zap.Uint8("profile", req.Profile),
			zap.String("auth", authName(req.Auth)), zap.Stringer("code", r.Code), zap.String("reason", r.Text))
	}
}

// failed logs the CA's own failure to handle an enrollment and returns err.
func (a *Authority) failed(req Request, err error) error {
	a.log.Error("enrollment failed", logging.SID(req.SID), zap.String("peer", req.Peer), zap.Error(err))
	return err
}
