package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"net"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"testing/cryptotest"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/internal/vectors"
	"pkiboard/wire"
)

// The CA's part of the test vectors of PROTOCOL.md's appendix: the PKI that
// every vector uses (pki.json), an enrollment with a token and a renewal,
// every frame in hex (enrollment.json), and the board's status
// (board-status.json). They are made by the Authority and its Server, in
// process over net.Pipe, and by the client's message and CheckAccepted, on a
// clock of their own; the root is fixed, and the CA's root key signs
// through vectors.Signer, by RFC 6979, so that every value is the same in
// every Go version. `go test ./ca -run Vectors -update` rewrites the files;
// then `go test ./session -run Vectors -update`, whose vectors use them.

// The vectors' CA: its settings and its clock's moments.
var (
	vecStart      = time.Date(2026, 9, 1, 8, 0, 0, 0, time.UTC) // the CA's first start; the tokens are made
	vecEnrollAt   = vecStart.Add(5 * time.Minute)               // the enrollment of enrollment.json
	vecIssueAt    = vecStart.Add(6 * time.Minute)               // the board and the other students enroll
	vecStatusAt   = vecStart.Add(10 * time.Minute)              // the CA signs the board's status
	vecRenewAt    = vecStart.Add(30 * 24 * time.Hour)           // the student renews
	vecRootName   = pkix.Name{CommonName: "pkiboard Test Vector Root CA", Organization: []string{"pkiboard"}}
	vecSIDPattern = `^[0-9]{10}$`
)

const (
	vecBoardName = "blackboard"
	vecEnrollSID = "1155000001"
)

// The files of the CA's vectors.
const (
	pkiVectors         = "pki.json"
	enrollmentVectors  = "enrollment.json"
	boardStatusVectors = "board-status.json"
)

// pkiFile is pki.json: the keys and certificates of the sessions' vectors.
type pkiFile struct {
	Description string               `json:"description"`
	Root        vecEntity            `json:"root"`
	Board       vecEntity            `json:"board"`
	Students    map[string]vecEntity `json:"students"` // by key type: "p256", "p384", "rsa2048"
}

// vecEntity is a key and its certificate.
type vecEntity struct {
	Name        string      `json:"name"`     // the CN: a SID, the board's name, the root's name
	KeyType     string      `json:"key_type"` // "ecdsa-p256", "ecdsa-p384", "rsa-2048"
	KeyPKCS8    vectors.Hex `json:"key_pkcs8"`
	Certificate vectors.Hex `json:"certificate"`
	CertSHA256  vectors.Hex `json:"cert_sha256"`
	Serial      vectors.Hex `json:"serial"`
}

// enrollmentFile is enrollment.json.
type enrollmentFile struct {
	Description string        `json:"description"`
	CA          vecCA         `json:"ca"`
	Enrollment  vecEnrollment `json:"enrollment"`
	Renewal     vecEnrollment `json:"renewal"`
}

// vecCA is the CA's configuration in the vectors.
type vecCA struct {
	Policy          string      `json:"policy"`
	SIDPattern      string      `json:"sid_pattern"`
	BoardName       string      `json:"board_name"`
	CertValidity    uint64      `json:"cert_validity_seconds"`
	RootFingerprint vectors.Hex `json:"root_fingerprint"`
}

// vecEnrollment is one EnrollRequest and its EnrollAccepted.
type vecEnrollment struct {
	Time    string `json:"time"` // the CA's clock
	SID     string `json:"sid"`
	Profile uint8  `json:"profile"`
	Auth    uint8  `json:"auth"`

	// auth 1: the token, its secret, the seed HKDF makes of it, the Ed25519
	// public key (the private key is the seed).
	Token          string      `json:"token,omitempty"`
	TokenSecret    vectors.Hex `json:"token_secret,omitempty"`
	TokenSeed      vectors.Hex `json:"token_seed,omitempty"`
	TokenPublicKey vectors.Hex `json:"token_public_key,omitempty"`

	// auth 2: the key of the certificate renewed (its certificate is the
	// enrollment's).
	RenewedKeyPKCS8 vectors.Hex `json:"renewed_key_pkcs8,omitempty"`

	KeyPKCS8      vectors.Hex `json:"key_pkcs8"` // the key the CSR certifies
	CSR           vectors.Hex `json:"csr"`
	CSRSHA256     vectors.Hex `json:"csr_sha256"`
	Binding       vectors.Hex `json:"binding"`
	Signature     vectors.Hex `json:"signature"`
	RequestFrame  vectors.Hex `json:"request_frame"`
	AcceptedFrame vectors.Hex `json:"accepted_frame"`
	Serial        vectors.Hex `json:"serial"`
	NotAfter      uint64      `json:"not_after"`
	Certificate   vectors.Hex `json:"certificate"`
}

// statusFile is board-status.json.
type statusFile struct {
	Description string      `json:"description"`
	Time        string      `json:"time"` // the CA's clock when it signed
	Status      vecStatus   `json:"status"`
	SignedBytes vectors.Hex `json:"signed_bytes"`
	Encoding    vectors.Hex `json:"encoding"`
}

// vecStatus is a BoardStatus's fields.
type vecStatus struct {
	Serial     vectors.Hex `json:"serial"`
	CertSHA256 vectors.Hex `json:"cert_sha256"`
	CRLNumber  uint64      `json:"crl_number"`
	Revoked    uint8       `json:"revoked"`
	ThisUpdate uint64      `json:"this_update"`
	NextUpdate uint64      `json:"next_update"`
	Signature  vectors.Hex `json:"signature"`
}

// caVectors are the three files' contents.
type caVectors struct {
	pki        pkiFile
	enrollment enrollmentFile
	status     statusFile
}

// files encodes the vectors as the three files.
func (v *caVectors) files(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for name, f := range map[string]any{pkiVectors: &v.pki, enrollmentVectors: &v.enrollment, boardStatusVectors: &v.status} {
		data, err := vectors.Marshal(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = data
	}
	return out
}

const (
	vecPKIDescription = "The PKI of pkiboard's test vectors (PROTOCOL.md, Appendix: test vectors): the root, the board and three students, their private keys (PKCS #8, DER) and their certificates (DER), all issued by the CA of enrollment.json. The session vectors use them."

	vecEnrollmentDescription = "An enrollment with a token (auth 1) and a renewal (auth 2) of the certificate it gave, every frame in hex (PROTOCOL.md section 4.2; Appendix: test vectors). A frame is its 4-byte length, then its payload."

	vecStatusDescription = "The board's status that the CA signed and that every session vector staples (PROTOCOL.md section 4.4; Appendix: test vectors)."
)

// vecClock is the vectors' CA clock.
type vecClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *vecClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *vecClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// vecRoot returns the vectors' root key and certificate, made as createRoot
// makes them (the same template), from a fixed key and serial, signed by
// RFC 6979.
func vecRoot(tb testing.TB) (*ecdsa.PrivateKey, *x509.Certificate) {
	tb.Helper()
	key := vectors.ECKey(elliptic.P256(), "root")
	serial, err := newSerial(vectors.Stream("root serial"))
	if err != nil {
		tb.Fatal(err)
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               vecRootName,
		NotBefore:             vecStart.Add(-backdate),
		NotAfter:              vecStart.Add(DefaultRootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski,
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), vectors.Signer{Key: key})
	if err != nil {
		tb.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return key, root
}

// vecCAState is the vectors' CA, open, with its clock and root.
type vecCAState struct {
	a      *Authority
	srv    *Server
	clock  *vecClock
	root   *x509.Certificate
	rootFP [32]byte
}

// openVecCA opens the vectors' CA: its fixed root written to a fresh
// directory, token policy, its randomness the stream "ca rand", and its root
// key replaced by a vectors.Signer.
func openVecCA(t *testing.T) *vecCAState {
	t.Helper()
	dir := t.TempDir()
	key, root := vecRoot(t)
	if err := keys.WritePrivateKey(filepath.Join(dir, RootKeyFile), key, nil); err != nil {
		t.Fatal(err)
	}
	if err := writeRoot(filepath.Join(dir, RootCertFile), root); err != nil {
		t.Fatal(err)
	}
	clock := &vecClock{t: vecStart}
	a, err := Open(Options{
		Dir: dir, Create: true, Subject: vecRootName, KeyAlgorithm: "ecdsa-p256",
		RootValidity: DefaultRootValidity, CertValidity: DefaultCertValidity, CRLValidity: DefaultCRLValidity,
		StatusValidity: DefaultStatusValidity, TokenTTL: DefaultTokenTTL,
		Policy: PolicyToken, SIDPattern: regexp.MustCompile(vecSIDPattern), BoardName: vecBoardName,
		Now: clock.Now, Rand: vectors.Stream("ca rand"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if !bytes.Equal(a.Root().Raw, root.Raw) {
		t.Fatal("the CA did not load the vectors' root")
	}
	a.key = vectors.Signer{Key: a.key}
	srv := &Server{Authority: a, HandshakeTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second}
	return &vecCAState{a: a, srv: srv, clock: clock, root: root, rootFP: keys.Fingerprint(root)}
}

// exchange sends one request frame to the CA's Server over net.Pipe and
// returns the answer frame.
func (s *vecCAState) exchange(t *testing.T, request []byte) []byte {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.srv.ServeConn(context.Background(), server, nil)
		server.Close()
	}()
	defer func() { client.Close(); <-done }()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write(request); err != nil {
		t.Fatal(err)
	}
	payload, err := wire.ReadFrame(client, wire.DefaultMaxFrame, nil)
	if err != nil {
		t.Fatal(err)
	}
	return frameOf(payload)
}

// frameOf returns payload as the frame that carries it.
func frameOf(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// enroll makes e's request, sends it — or, when sent is not nil, those
// bytes instead — and checks the answer as the client does.
func (s *vecCAState) enroll(t *testing.T, e Enroll, sent []byte) (v vecEnrollment, cert *x509.Certificate) {
	t.Helper()
	m, err := e.message()
	if err != nil {
		t.Fatal(err)
	}
	payload, err := wire.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	request := frameOf(payload)
	if sent != nil {
		request = sent
	}
	answer := s.exchange(t, request)
	am, err := wire.Unmarshal(answer[4:])
	if err != nil {
		t.Fatal(err)
	}
	acc, err := wire.Expect[*wire.EnrollAccepted](am, nil)
	if err != nil {
		t.Fatalf("the CA refused the request of %s: %v", e.SID, err)
	}
	checked, err := CheckAccepted(acc, e)
	if err != nil {
		t.Fatalf("the client refuses the CA's answer to %s: %v", e.SID, err)
	}
	cert = checked.Certificate
	csrSum := sha256.Sum256(e.CSR)
	v = vecEnrollment{
		Time: s.clock.Now().Format(time.RFC3339), SID: e.SID, Profile: e.Profile, Auth: m.Auth,
		CSR: e.CSR, CSRSHA256: csrSum[:],
		Binding:      wire.EnrollBinding(m.Auth, m.Profile, m.SID, m.Root, m.CSR),
		Signature:    m.Signature,
		RequestFrame: request, AcceptedFrame: answer,
		Serial: acc.Serial, NotAfter: acc.NotAfter, Certificate: acc.Certificate,
	}
	return v, cert
}

// vecStudent is a student (or the board) of the vectors.
type vecStudent struct {
	name, keyType, label string
	profile              uint8
	key                  crypto.Signer
}

func vecStudents() []vecStudent {
	return []vecStudent{
		{vecEnrollSID, "ecdsa-p256", "p256", wire.ProfileStudent, vectors.ECKey(elliptic.P256(), "student "+vecEnrollSID)},
		{vecBoardName, "ecdsa-p256", "board", wire.ProfileBoard, vectors.ECKey(elliptic.P256(), "board")},
		{"1155000002", "ecdsa-p384", "p384", wire.ProfileStudent, vectors.ECKey(elliptic.P384(), "student 1155000002")},
		{"1155000003", "rsa-2048", "rsa2048", wire.ProfileStudent, vectors.RSAKey(2048, "student 1155000003")},
	}
}

// makeCAVectors runs the vectors' CA from its first start to the renewal.
// With committed set, the CA is sent the committed request frames of the
// enrollment and the renewal instead of those the client makes.
func makeCAVectors(t *testing.T, committed *enrollmentFile) *caVectors {
	t.Helper()
	s := openVecCA(t)
	v := &caVectors{}
	v.pki.Description = vecPKIDescription
	v.pki.Students = map[string]vecEntity{}
	v.enrollment.Description = vecEnrollmentDescription
	v.status.Description = vecStatusDescription
	v.enrollment.CA = vecCA{Policy: PolicyToken, SIDPattern: vecSIDPattern, BoardName: vecBoardName,
		CertValidity: uint64(DefaultCertValidity / time.Second), RootFingerprint: s.rootFP[:]}

	rootKey, _ := vecRoot(t)
	v.pki.Root = entity(t, vecRootName.CommonName, "ecdsa-p256", rootKey, s.root)

	// The tokens, at the first start.
	students := vecStudents()
	tokens := make([]string, len(students))
	for i, st := range students {
		var err error
		if st.profile == wire.ProfileBoard {
			tokens[i], _, err = s.a.CreateBoardToken(0)
		} else {
			tokens[i], _, err = s.a.CreateToken(st.name, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	// Everyone enrolls; the first is enrollment.json's.
	var first *x509.Certificate
	for i, st := range students {
		at := vecIssueAt
		if i == 0 {
			at = vecEnrollAt
		}
		s.clock.Set(at)
		tokenKey, err := TokenKey(tokens[i])
		if err != nil {
			t.Fatal(err)
		}
		signer := vectors.Signer{Key: st.key}
		csr, err := newCSR(st.name, signer)
		if err != nil {
			t.Fatal(err)
		}
		e := Enroll{SID: st.name, Profile: st.profile, CSR: csr, Public: st.key.Public(), Root: s.root,
			Auth: Authorization{TokenKey: tokenKey}}
		var sent []byte
		if i == 0 && committed != nil {
			sent = committed.Enrollment.RequestFrame
		}
		ev, cert := s.enroll(t, e, sent)
		ent := entity(t, st.name, st.keyType, st.key, cert)
		if st.profile == wire.ProfileBoard {
			v.pki.Board = ent
		} else {
			v.pki.Students[st.label] = ent
		}
		if i == 0 {
			first = cert
			ev.Token = tokens[i]
			ev.TokenSecret, ev.TokenSeed, ev.TokenPublicKey = tokenParts(t, tokens[i])
			ev.KeyPKCS8 = ent.KeyPKCS8
			v.enrollment.Enrollment = ev
		}
	}

	// The board's status.
	s.clock.Set(vecStatusAt)
	board, err := x509.ParseCertificate(v.pki.Board.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := s.a.BoardStatus(board)
	if err != nil {
		t.Fatal(err)
	}
	v.status = statusOf(t, enc)
	v.status.Time = vecStatusAt.Format(time.RFC3339)

	// The renewal of the first student's certificate, with a new key.
	s.clock.Set(vecRenewAt)
	oldKey, newKey := students[0].key, vectors.ECKey(elliptic.P256(), "student "+vecEnrollSID+" renewed")
	csr, err := newCSR(vecEnrollSID, vectors.Signer{Key: newKey})
	if err != nil {
		t.Fatal(err)
	}
	e := Enroll{SID: vecEnrollSID, Profile: wire.ProfileStudent, CSR: csr, Public: newKey.Public(), Root: s.root,
		Auth: Authorization{Renew: first, RenewKey: vectors.Signer{Key: oldKey}}}
	var sent []byte
	if committed != nil {
		sent = committed.Renewal.RequestFrame
	}
	rv, _ := s.enroll(t, e, sent)
	rv.KeyPKCS8 = pkcs8(t, newKey)
	rv.RenewedKeyPKCS8 = pkcs8(t, oldKey)
	v.enrollment.Renewal = rv
	return v
}

// tokenParts returns a token's secret, the seed derived from it and its
// public key.
func tokenParts(t *testing.T, token string) (secret, seed, pub []byte) {
	t.Helper()
	key, err := TokenKey(token)
	if err != nil {
		t.Fatal(err)
	}
	secret, err = base64.RawURLEncoding.DecodeString(token[len(TokenPrefix):])
	if err != nil {
		t.Fatal(err)
	}
	return secret, key.Seed(), key.Public().(ed25519.PublicKey)
}

func pkcs8(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func entity(t *testing.T, name, keyType string, key crypto.Signer, cert *x509.Certificate) vecEntity {
	t.Helper()
	sum := sha256.Sum256(cert.Raw)
	return vecEntity{Name: name, KeyType: keyType, KeyPKCS8: pkcs8(t, key), Certificate: cert.Raw,
		CertSHA256: sum[:], Serial: cert.SerialNumber.Bytes()}
}

// statusOf decodes an encoded status into the file's fields.
func statusOf(t *testing.T, enc []byte) statusFile {
	t.Helper()
	st, err := wire.ParseBoardStatus(enc)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := st.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	revoked := uint8(0)
	if st.Revoked {
		revoked = 1
	}
	return statusFile{
		Description: vecStatusDescription,
		Status: vecStatus{Serial: st.Serial, CertSHA256: st.CertSHA256[:], CRLNumber: st.CRLNumber, Revoked: revoked,
			ThisUpdate: st.ThisUpdate, NextUpdate: st.NextUpdate, Signature: st.Signature},
		SignedBytes: signed, Encoding: enc,
	}
}

// TestVectorsCA makes the CA's vectors again and compares them with the
// committed files, byte for byte (-update rewrites the files), then checks
// each value of the committed files from the values before it, as a reader
// of the appendix would.
func TestVectorsCA(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	got := makeCAVectors(t, nil).files(t)
	for _, name := range []string{pkiVectors, enrollmentVectors, boardStatusVectors} {
		vectors.Check(t, name, got[name], *update)
	}
	if *update || t.Failed() {
		return
	}
	if err := checkCASteps(vectors.Read(t, pkiVectors), vectors.Read(t, enrollmentVectors), vectors.Read(t, boardStatusVectors)); err != nil {
		t.Error(err)
	}
}

// TestVectorsCAAcceptsCommitted feeds the committed request frames to the
// CA's state machine, which must answer the committed frames, and the
// committed answers to the client's check, which must accept them.
func TestVectorsCAAcceptsCommitted(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	var committed enrollmentFile
	vectors.Load(t, enrollmentVectors, &committed)
	got := makeCAVectors(t, &committed).files(t)
	for _, name := range []string{pkiVectors, enrollmentVectors, boardStatusVectors} {
		if err := vectors.Compare(name, got[name], vectors.Read(t, name)); err != nil {
			t.Error(err)
		}
	}
}

// TestVectorsCAEveryValueCounts changes each value of each committed file of
// the CA's vectors, one at a time, and checks that the check of
// TestVectorsCA refuses the changed file: every byte is compared with what
// the code makes. It also checks that the reader's step-by-step check
// (checkCASteps) refuses every change but those of the fields it does not
// examine, listed here.
func TestVectorsCAEveryValueCounts(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	got := makeCAVectors(t, nil).files(t)
	unexamined := map[string]bool{ // by the step check: the descriptions and the CA's settings as text
		"description": true, "ca.policy": true, "ca.sid_pattern": true, "ca.board_name": true,
	}
	names := []string{pkiVectors, enrollmentVectors, boardStatusVectors}
	for i, name := range names {
		committed := vectors.Read(t, name)
		ms, err := vectors.Mutations(committed)
		if err != nil {
			t.Fatal(err)
		}
		steps := 0
		for _, m := range ms {
			if vectors.Compare(name, got[name], m.Data) == nil {
				t.Errorf("%s: a change of %s passes the comparison", name, m.Path)
			}
			files := [3][]byte{vectors.Read(t, names[0]), vectors.Read(t, names[1]), vectors.Read(t, names[2])}
			files[i] = m.Data
			if checkCASteps(files[0], files[1], files[2]) != nil {
				steps++
			} else if !unexamined[m.Path] {
				t.Errorf("%s: the step check passes a change of %s", name, m.Path)
			}
		}
		t.Logf("%s: %d values, each change refused; %d refused by the step check too", name, len(ms), steps)
	}
}
