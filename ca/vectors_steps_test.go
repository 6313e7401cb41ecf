package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"pkiboard/internal/vectors"
)

// checkCASteps checks each value of the CA's committed vector files from
// the values before it, as PROTOCOL.md's appendix says a reader can: with
// the standard library alone, and none of this package's or package wire's
// code — the encodings are rebuilt here by hand from PROTOCOL.md §4.
func checkCASteps(pkiData, enrollmentData, statusData []byte) error {
	var p pkiFile
	var e enrollmentFile
	var s statusFile
	for _, f := range []struct {
		data []byte
		v    any
	}{{pkiData, &p}, {enrollmentData, &e}, {statusData, &s}} {
		if err := vectors.Decode(f.data, f.v); err != nil {
			return err
		}
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// The PKI: the root signed itself, and every certificate, by RFC 6979.
	root, err := x509.ParseCertificate(p.Root.Certificate)
	if err != nil {
		return fmt.Errorf("pki.json: root: %w", err)
	}
	rootKey, err := parseKey(p.Root.KeyPKCS8)
	if err != nil {
		return fmt.Errorf("pki.json: root key: %w", err)
	}
	entities := map[string]vecEntity{"root": p.Root, "board": p.Board}
	for name, st := range p.Students {
		entities["students."+name] = st
	}
	for name, ent := range entities {
		cert, err := x509.ParseCertificate(ent.Certificate)
		if err != nil {
			fail("pki.json %s: %v", name, err)
			continue
		}
		key, err := parseKey(ent.KeyPKCS8)
		if err != nil {
			fail("pki.json %s: key: %v", name, err)
			continue
		}
		sum := sha256.Sum256(ent.Certificate)
		switch {
		case !bytes.Equal(ent.CertSHA256, sum[:]):
			fail("pki.json %s: cert_sha256 is not SHA-256(certificate)", name)
		case !bytes.Equal(ent.Serial, cert.SerialNumber.Bytes()):
			fail("pki.json %s: serial is not the certificate's", name)
		case cert.Subject.CommonName != ent.Name:
			fail("pki.json %s: name %q is not the certificate's CN %q", name, ent.Name, cert.Subject.CommonName)
		case !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey):
			fail("pki.json %s: the key is not the certificate's", name)
		case keyType(key) != ent.KeyType:
			fail("pki.json %s: key_type %q, the key is %s", name, ent.KeyType, keyType(key))
		}
		if err := rfc6979Signed(rootKey, cert.RawTBSCertificate, cert.Signature, root, cert); err != nil {
			fail("pki.json %s: %v", name, err)
		}
	}

	// The enrollment and the renewal.
	fp := sha256.Sum256(p.Root.Certificate)
	if !bytes.Equal(e.CA.RootFingerprint, fp[:]) {
		fail("enrollment.json: root_fingerprint is not SHA-256 of the root")
	}
	if st := p.Students["p256"]; !bytes.Equal(e.Enrollment.Certificate, st.Certificate) || !bytes.Equal(e.Enrollment.KeyPKCS8, st.KeyPKCS8) {
		fail("enrollment.json: the enrollment's key and certificate are not pki.json's students.p256")
	}
	if !bytes.Equal(e.Renewal.RenewedKeyPKCS8, e.Enrollment.KeyPKCS8) {
		fail("enrollment.json: the renewal does not renew the enrollment's certificate")
	}
	for _, ev := range []struct {
		name string
		v    vecEnrollment
	}{{"enrollment", e.Enrollment}, {"renewal", e.Renewal}} {
		if err := checkEnrollmentSteps(ev.v, e, root, rootKey); err != nil {
			fail("enrollment.json %s: %v", ev.name, err)
		}
	}

	// The board's status.
	signed := append([]byte("pkiboard v2 board status\x00"), byte(len(s.Status.Serial)))
	signed = append(signed, s.Status.Serial...)
	signed = append(signed, s.Status.CertSHA256...)
	signed = binary.BigEndian.AppendUint64(signed, s.Status.CRLNumber)
	signed = append(signed, s.Status.Revoked)
	signed = binary.BigEndian.AppendUint64(signed, s.Status.ThisUpdate)
	signed = binary.BigEndian.AppendUint64(signed, s.Status.NextUpdate)
	enc := binary.BigEndian.AppendUint16(bytes.Clone(signed[len("pkiboard v2 board status\x00"):]), uint16(len(s.Status.Signature)))
	enc = append(enc, s.Status.Signature...)
	at, err := time.Parse(time.RFC3339, s.Time)
	switch {
	case !bytes.Equal(s.SignedBytes, signed):
		fail("board-status.json: signed_bytes are not the context and the fields")
	case !bytes.Equal(s.Encoding, enc):
		fail("board-status.json: encoding is not the fields and the signature")
	case !bytes.Equal(s.Status.CertSHA256, p.Board.CertSHA256) || !bytes.Equal(s.Status.Serial, p.Board.Serial):
		fail("board-status.json: the status is not for pki.json's board")
	case err != nil || s.Status.ThisUpdate != uint64(at.Unix())-60 || s.Status.NextUpdate != s.Status.ThisUpdate+3660:
		fail("board-status.json: this_update is not a minute before the CA's time, or next_update not an hour and a minute after it")
	}
	if err := rfc6979Signed(rootKey, signed, s.Status.Signature, nil, nil); err != nil {
		fail("board-status.json: %v", err)
	}
	return errors.Join(errs...)
}

// checkEnrollmentSteps checks one request and its answer.
func checkEnrollmentSteps(v vecEnrollment, e enrollmentFile, root *x509.Certificate, rootKey crypto.Signer) error {
	key, err := parseKey(v.KeyPKCS8)
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(v.CSR)
	if err != nil {
		return err
	}
	csrSum := sha256.Sum256(v.CSR)
	switch {
	case csr.CheckSignature() != nil || csr.Subject.CommonName != v.SID:
		return errors.New("the CSR's signature does not verify, or its CN is not the SID")
	case !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey):
		return errors.New("the CSR is not for key_pkcs8")
	case !bytes.Equal(v.CSRSHA256, csrSum[:]):
		return errors.New("csr_sha256 is not SHA-256(csr)")
	}
	if err := rfc6979Signed(key, csr.RawTBSCertificateRequest, csr.Signature, nil, nil); err != nil {
		return fmt.Errorf("the CSR: %w", err)
	}

	// binding = "pkiboard v2 enroll" || 0x00 || auth || profile || sid: string8 || root || SHA-256(csr)
	binding := append([]byte("pkiboard v2 enroll\x00"), v.Auth, v.Profile, byte(len(v.SID)))
	binding = append(append(append(binding, v.SID...), e.CA.RootFingerprint...), csrSum[:]...)
	if !bytes.Equal(v.Binding, binding) {
		return errors.New("binding is not the context and the request's fields")
	}
	var tokenKey, renewed []byte
	switch v.Auth {
	case 1: // token = "pkbt_" || base64url(secret); seed = HKDF-SHA256(secret, "", "pkiboard v2 token key", 32)
		if v.Token != "pkbt_"+base64.RawURLEncoding.EncodeToString(v.TokenSecret) {
			return errors.New("token is not pkbt_ and the secret in unpadded base64url")
		}
		seed, err := hkdf.Key(sha256.New, v.TokenSecret, nil, "pkiboard v2 token key", 32)
		if err != nil || !bytes.Equal(seed, v.TokenSeed) {
			return errors.New("token_seed is not HKDF-SHA256 of the secret")
		}
		tk := ed25519.NewKeyFromSeed(seed)
		if !bytes.Equal(tk.Public().(ed25519.PublicKey), v.TokenPublicKey) {
			return errors.New("token_public_key is not the Ed25519 key of the seed")
		}
		if !bytes.Equal(ed25519.Sign(tk, binding), v.Signature) {
			return errors.New("signature is not the token key's Ed25519 signature of the binding")
		}
		tokenKey = v.TokenPublicKey
	case 2:
		rk, err := parseKey(v.RenewedKeyPKCS8)
		if err != nil {
			return err
		}
		if err := rfc6979Signed(rk, binding, v.Signature, nil, nil); err != nil {
			return fmt.Errorf("the renewal's signature: %w", err)
		}
		renewed = e.Enrollment.Certificate
	default:
		return fmt.Errorf("auth %d", v.Auth)
	}

	// EnrollRequest: 0x10, version u16, profile u8, sid string8, csr bytes16,
	// root fixed[32], auth u8, token_key bytes8, certificate bytes16, signature bytes16.
	body := binary.BigEndian.AppendUint16([]byte{0x10}, 4)
	body = append(body, v.Profile, byte(len(v.SID)))
	body = append(body, v.SID...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(v.CSR)))
	body = append(append(body, v.CSR...), e.CA.RootFingerprint...)
	body = append(body, v.Auth, byte(len(tokenKey)))
	body = append(body, tokenKey...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(renewed)))
	body = append(body, renewed...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(v.Signature)))
	body = append(body, v.Signature...)
	if !bytes.Equal(v.RequestFrame, frameBytes(body)) {
		return errors.New("request_frame is not the EnrollRequest of these fields")
	}

	// EnrollAccepted: 0x11, serial bytes8, not_after u64, certificate bytes16,
	// root bytes16.
	acc := append([]byte{0x11, byte(len(v.Serial))}, v.Serial...)
	acc = binary.BigEndian.AppendUint64(acc, v.NotAfter)
	acc = binary.BigEndian.AppendUint16(acc, uint16(len(v.Certificate)))
	acc = append(acc, v.Certificate...)
	acc = binary.BigEndian.AppendUint16(acc, uint16(len(root.Raw)))
	acc = append(acc, root.Raw...)
	if !bytes.Equal(v.AcceptedFrame, frameBytes(acc)) {
		return errors.New("accepted_frame is not the EnrollAccepted of these fields")
	}
	cert, err := x509.ParseCertificate(v.Certificate)
	if err != nil {
		return err
	}
	at, err := time.Parse(time.RFC3339, v.Time)
	if err != nil {
		return err
	}
	wantEKU := x509.ExtKeyUsageClientAuth
	if v.Profile == 2 {
		wantEKU = x509.ExtKeyUsageServerAuth
	}
	switch {
	case !bytes.Equal(cert.SerialNumber.Bytes(), v.Serial) || cert.NotAfter.Unix() != int64(v.NotAfter):
		return errors.New("the certificate's serial or notAfter is not the answer's")
	case cert.Subject.CommonName != v.SID || !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey):
		return errors.New("the certificate is not for the SID and the CSR's key")
	case !cert.NotBefore.Equal(at.Add(-time.Minute)) || !cert.NotAfter.Equal(at.Add(time.Duration(e.CA.CertValidity)*time.Second)):
		return errors.New("the certificate is not valid from a minute before the CA's time for cert_validity_seconds")
	case cert.IsCA || !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{wantEKU}):
		return errors.New("the certificate is a CA, or its EKU is not the profile's")
	}
	return rfc6979Signed(rootKey, cert.RawTBSCertificate, cert.Signature, root, cert)
}

// frameBytes returns the frame of payload: its u32 length, then itself.
func frameBytes(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

func parseKey(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T is no signer", k)
	}
	// A parser may ignore parts of the encoding (an EC key's copy of its
	// public key): the key must be encoded as it is encoded again.
	if again, err := x509.MarshalPKCS8PrivateKey(k); err != nil || !bytes.Equal(again, der) {
		return nil, errors.New("the key is not in canonical PKCS #8")
	}
	return s, nil
}

func keyType(k crypto.Signer) string {
	switch k := k.Public().(type) {
	case *ecdsa.PublicKey:
		return "ecdsa-" + map[int]string{256: "p256", 384: "p384"}[k.Curve.Params().BitSize]
	case interface{ Size() int }:
		return fmt.Sprintf("rsa-%d", k.Size()*8)
	}
	return "unknown"
}

// rfc6979Signed checks that sig is the ECDSA signature of msg by key by RFC
// 6979, with the hash of the key's curve (SHA-256 for P-256, SHA-384 for
// P-384), and, when given, that parent's signature on cert verifies.
func rfc6979Signed(key crypto.Signer, msg, sig []byte, parent, cert *x509.Certificate) error {
	if parent != nil {
		if err := cert.CheckSignatureFrom(parent); err != nil {
			return err
		}
	}
	h := crypto.SHA256
	if k, ok := key.Public().(*ecdsa.PublicKey); ok && k.Curve.Params().BitSize == 384 {
		h = crypto.SHA384
	}
	d := h.New()
	d.Write(msg)
	want, err := key.Sign(nil, d.Sum(nil), h)
	if err != nil {
		return err
	}
	if !bytes.Equal(want, sig) {
		return errors.New("the signature is not the RFC 6979 one")
	}
	return nil
}
