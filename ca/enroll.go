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
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"pkiboard/internal/keys"
	"pkiboard/internal/logging"
	"pkiboard/wire"
)

// Request is one enrollment request, as the CA exchange carries it
// (PROTOCOL.md §4).
type Request struct {
	Profile uint8  // wire.ProfileStudent or wire.ProfileBoard
	SID     string // the student ID, or the board's name for profile 2
	CSR     []byte // PKCS#10, DER
	Token   string // an enrollment token or the board secret; "" when none is needed
	Peer    string // the client's address, for the record and the log
}

// Issued is a certificate Enroll issued and stored durably.
type Issued struct {
	Certificate *x509.Certificate
	PEM         []byte // the certificate in PEM, as cert.pem is sent
}

// grant is what an accepted authorization check leaves to do in the commit.
type grant struct {
	token     bool     // a one-time token is to be spent
	tokenHash [32]byte // its SHA-256
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// Enroll checks req in the order of PROTOCOL.md §4 and, if it passes, issues
// a certificate and stores it (with the spent token and the decision) in one
// durable transaction before returning it. A refusal is returned as a
// *wire.Refusal carrying the protocol's code and a sentence for the student;
// it is recorded as a decision too. Any other error is the CA's own failure.
func (a *Authority) Enroll(ctx context.Context, req Request) (*Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ca: enroll: %w", err)
	}
	now := a.now()
	csr, g, refusal, err := a.check(req, now)
	if err != nil {
		return nil, a.failed(req, err)
	}
	if refusal != nil {
		return nil, a.refuse(req, now, refusal)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ca: enroll: %w", err)
	}
	for range 3 {
		cert, err := a.issue(csr.PublicKey, req, now)
		if err != nil {
			return nil, a.failed(req, err)
		}
		refusal, err := a.commit(cert, req, g, now)
		if errors.Is(err, errSerialTaken) {
			a.log.Warn("random serial already issued; drawing another", zap.String("serial", keys.SerialHex(cert.SerialNumber)))
			continue
		}
		if err != nil {
			return nil, a.failed(req, fmt.Errorf("ca: store certificate: %w", err))
		}
		if refusal != nil {
			// The token was spent by a concurrent enrollment after check saw
			// it unused; commit recorded the refusal.
			a.logRefusal(req, refusal)
			return nil, refusal
		}
		return &Issued{Certificate: cert, PEM: keys.EncodeCertificatePEM(cert.Raw)}, nil
	}
	return nil, a.failed(req, errors.New("ca: could not draw an unused serial number"))
}

// check applies the checks of PROTOCOL.md §4 in order (the profile first,
// since every later check depends on it) and returns the parsed CSR and
// what the commit must do, or the first refusal.
func (a *Authority) check(req Request, now time.Time) (*x509.CertificateRequest, grant, *wire.Refusal, error) {
	var g grant
	if req.Profile != wire.ProfileStudent && req.Profile != wire.ProfileBoard {
		return nil, g, wire.Refusef(wire.CodeBadProfile, "profile %d is unknown; use %d for a student certificate or %d for the board's", req.Profile, wire.ProfileStudent, wire.ProfileBoard), nil
	}

	// 1. The CSR parses.
	if len(req.CSR) == 0 || len(req.CSR) > wire.MaxCSRLen {
		return nil, g, wire.Refusef(wire.CodeBadCSR, "the CSR is %d bytes; it must be 1 to %d bytes of DER", len(req.CSR), wire.MaxCSRLen), nil
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, g, badCSR(req.CSR, err), nil
	}

	// 2. Proof of possession.
	if err := csr.CheckSignature(); err != nil {
		return nil, g, wire.Refusef(wire.CodeBadCSRSignature, "the CSR's signature does not verify with the public key it carries (%v); make a new CSR signed with the private key you hold", err), nil
	}

	// 3. Key type and size.
	if r := checkKey(csr.PublicKey); r != nil {
		return nil, g, r, nil
	}

	// 4. The SID, or the board's name.
	if req.Profile == wire.ProfileBoard {
		if req.SID != a.o.BoardName {
			return nil, g, wire.Refusef(wire.CodeBoardNotAuthorized, "a board certificate is issued only for the board name %q, not %s", a.o.BoardName, quote(req.SID)), nil
		}
	} else if len(req.SID) > wire.MaxSIDLen || !utf8.ValidString(req.SID) || !a.sidRE.MatchString(req.SID) {
		return nil, g, wire.Refusef(wire.CodeBadSID, "the SID %s does not match the CA's SID pattern %s; check the SID", quote(req.SID), a.o.SIDPattern), nil
	} else if req.SID == a.o.BoardName {
		// A student certificate named like the board would confuse anyone
		// who reads a CN without the EKU.
		return nil, g, wire.Refusef(wire.CodeBadSID, "the name %q is reserved for the board; check the SID", req.SID), nil
	}

	// 5. The subject is exactly CN=sid.
	if r := checkSubject(csr.RawSubject, req.SID); r != nil {
		return nil, g, r, nil
	}

	// 6. The roster.
	if req.Profile == wire.ProfileStudent && a.roster != nil && !a.roster.contains(req.SID) {
		return nil, g, wire.Refusef(wire.CodeNotOnRoster, "the SID %q is not on the course roster; ask the course staff to add it", req.SID), nil
	}

	// 7. Authorization.
	switch {
	case req.Profile == wire.ProfileStudent && a.o.Policy == PolicyOpen:
		return csr, g, nil, nil
	case req.Profile == wire.ProfileStudent && req.Token == "":
		return nil, g, wire.Refusef(wire.CodeTokenRequired, "the CA requires an enrollment token for SID %q; ask the course staff for one", req.SID), nil
	case req.Profile == wire.ProfileBoard && req.Token == "":
		return nil, g, wire.Refusef(wire.CodeBoardNotAuthorized, "a board certificate needs the board enrollment secret (%s in the CA's data directory) or a board token", BoardSecretFile), nil
	case req.Profile == wire.ProfileBoard && a.isBoardSecret(req.Token):
		return csr, g, nil, nil
	}
	g = grant{token: true, tokenHash: hashSecret(req.Token)}
	var rec tokenRecord
	var problem tokenProblem
	err = a.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, problem, err = checkToken(tx, g.tokenHash, req.SID, req.Profile, now)
		return err
	})
	if err != nil {
		return nil, g, nil, fmt.Errorf("ca: look up token: %w", err)
	}
	if problem != tokenOK {
		return nil, g, a.tokenRefusal(problem, rec, req.SID, req.Profile), nil
	}
	return csr, g, nil, nil
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

// commit stores the certificate, spends the token and records the accepted
// decision in one transaction, and returns once it is durable. If the token
// turns out to be spent already (a concurrent enrollment won the race), it
// records the refusal instead and returns it.
func (a *Authority) commit(cert *x509.Certificate, req Request, g grant, now time.Time) (*wire.Refusal, error) {
	serial := keys.SerialHex(cert.SerialNumber)
	// Encode before the transaction: group commit serializes what runs inside.
	certJSON, err := encodeCertificate(cert, req.SID, req.Profile)
	if err != nil {
		return nil, err
	}
	decisionJSON, err := json.Marshal(decisionRecord{
		Time: now, SID: req.SID, Peer: req.Peer, Profile: req.Profile, Accepted: true, Serial: serial,
	})
	if err != nil {
		return nil, err
	}
	var refusal *wire.Refusal // set only by the last run of fn
	fn := func(tx *bolt.Tx) error {
		refusal = nil
		if g.token {
			rec, problem, err := checkToken(tx, g.tokenHash, req.SID, req.Profile, now)
			if err != nil {
				return err
			}
			if problem != tokenOK {
				refusal = a.tokenRefusal(problem, rec, req.SID, req.Profile)
				return putDecision(tx, refusedDecision(req, now, refusal))
			}
			if err := spendToken(tx, g.tokenHash, rec, now, serial); err != nil {
				return err
			}
		}
		if err := putCertificateJSON(tx, cert.SerialNumber.Bytes(), req.SID, certJSON); err != nil {
			return err
		}
		return putDecisionJSON(tx, decisionJSON)
	}
	if err := a.db.Update(fn); err != nil {
		return nil, err
	}
	return refusal, nil
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

// refuse records a refusal found before the commit, logs it, and returns it.
// A failure to record it is logged; the refusal is returned all the same.
func (a *Authority) refuse(req Request, now time.Time, r *wire.Refusal) error {
	d := refusedDecision(req, now, r)
	if err := a.db.Update(func(tx *bolt.Tx) error { return putDecision(tx, d) }); err != nil {
		a.log.Error("cannot record the refusal", logging.SID(d.SID), zap.Error(err))
	}
	a.logRefusal(req, r)
	return r
}

// logRefusal logs a refusal: at warn level when it may be an attack on
// the CA (a forged CSR, a bad token or board secret), at info level when
// it is a student's mistake.
func (a *Authority) logRefusal(req Request, r *wire.Refusal) {
	level := zapcore.InfoLevel
	switch r.Code {
	case wire.CodeBadCSRSignature, wire.CodeTokenInvalid, wire.CodeTokenUsed, wire.CodeBoardNotAuthorized:
		level = zapcore.WarnLevel
	}
	sid := req.SID
	if len(sid) > wire.MaxSIDLen {
		sid = sid[:wire.MaxSIDLen]
	}
	if ce := a.log.Check(level, "enrollment refused"); ce != nil {
		ce.Write(logging.SID(sid), zap.String("peer", req.Peer), zap.Uint8("profile", req.Profile),
			zap.Stringer("code", r.Code), zap.String("reason", r.Text))
	}
}

// failed logs the CA's own failure to handle an enrollment and returns err.
func (a *Authority) failed(req Request, err error) error {
	a.log.Error("enrollment failed", logging.SID(req.SID), zap.String("peer", req.Peer), zap.Error(err))
	return err
}
