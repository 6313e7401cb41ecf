package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"unicode/utf8"

	"pkiboard/internal/fuzzseed"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

var update = flag.Bool("update", false, "rewrite the fixtures and seed corpora under testdata/")

// A FuzzEnrollCheck input is a mode byte and an EnrollRequest body. The mode
// says which CA judges it and what the target fixes up after decoding, so
// that the fuzzer reaches the paths behind a valid root and a valid
// signature, which it cannot make itself:
const (
	fuzzTokenCA   = 1 << 0 // the CA with policy "token" and a roster; else the open CA
	fuzzFixRoot   = 1 << 1 // set root to the CA's fingerprint
	fuzzSignToken = 1 << 2 // sign as auth 1 with a valid token of testSID (its key and signature replace the request's)
	fuzzRenew     = 1 << 3 // sign as auth 2, the renewal of a valid certificate of testSID
)

// enrollSeed is one seed of FuzzEnrollCheck.
type enrollSeed struct {
	mode uint8
	req  wire.EnrollRequest
}

// body returns the seed's EnrollRequest body.
func (s enrollSeed) body(tb testing.TB) []byte {
	r := s.req
	r.Version = wire.ProtocolVersion
	b, err := wire.Marshal(&r)
	if err != nil {
		tb.Fatal(err)
	}
	return b[1:]
}

// enrollSeeds returns the seeds of FuzzEnrollCheck: the openssl fixtures,
// CSRs made here with hostile subjects and extensions, and broken encodings.
func enrollSeeds(tb testing.TB) map[string]enrollSeed {
	tb.Helper()
	p256 := fixtureCSR(tb, "p256.csr")
	key := newKey(tb)
	csr := func(tmpl *x509.CertificateRequest) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			tb.Fatal(err)
		}
		return der
	}
	cnValue := func(cn string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn}
	}
	bad := slices.Clone(p256)
	bad[len(bad)-5] ^= 1
	pemCSR, err := os.ReadFile(filepath.Join("testdata", "p256.csr"))
	if err != nil {
		tb.Fatal(err)
	}
	evil, _ := url.Parse("https://evil.example/")
	std := func(profile uint8, sid string, csr []byte) wire.EnrollRequest {
		return wire.EnrollRequest{Profile: profile, SID: sid, CSR: csr}
	}
	const open, fix, token, renew = 0, fuzzFixRoot, fuzzTokenCA | fuzzFixRoot | fuzzSignToken, fuzzTokenCA | fuzzFixRoot | fuzzRenew
	bogusKey := wire.EnrollRequest{Profile: 1, SID: testSID, CSR: p256, Auth: wire.AuthToken,
		TokenKey: make([]byte, wire.TokenKeyLen), Signature: make([]byte, wire.TokenSignatureLen)}
	seeds := map[string]enrollSeed{
		"garbage":           {fix, std(1, testSID, []byte("not a CSR at all"))},
		"pem":               {fix, std(1, testSID, pemCSR)},
		"trailing-byte":     {fix, std(1, testSID, append(slices.Clone(p256), 0))},
		"broken-sig":        {fix, std(1, testSID, bad)},
		"truncated":         {fix, std(1, testSID, p256[:len(p256)/2])},
		"profile-0":         {fix, std(0, testSID, p256)},
		"profile-255":       {fix, std(255, testSID, p256)},
		"sid-board-name":    {fix, std(1, testBoard, csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: testBoard}}))},
		"wrong-root":        {open, std(1, testSID, p256)},
		"token-valid":       {token, std(1, testSID, p256)},
		"token-unknown":     {fuzzTokenCA | fix, bogusKey},
		"token-bad-csr":     {token, std(1, testSID, bad)},
		"token-rsa8192":     {token, std(1, testSID, fixtureCSR(tb, "rsa8192.csr"))},
		"token-other-sid":   {token, std(1, "1155000002", csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "1155000002"}}))},
		"token-no-auth":     {fuzzTokenCA | fix, std(1, testSID, p256)},
		"token-wrong-root":  {fuzzTokenCA | fuzzSignToken, std(1, testSID, p256)},
		"renewal":           {renew, std(1, testSID, csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: testSID}}))},
		"renewal-same-key":  {renew, std(1, testSID, makeCSR(tb, fuzzRenewKey(), testSID))},
		"renewal-as-board":  {renew, std(2, testBoard, fixtureCSR(tb, "board.csr"))},
		"renewal-junk-cert": {fuzzTokenCA | fix, wire.EnrollRequest{Profile: 1, SID: testSID, CSR: p256, Auth: wire.AuthRenewal, Certificate: []byte{0x30, 0}, Signature: []byte{1}}},
		"board-no-auth":     {fix, std(2, testBoard, fixtureCSR(tb, "board.csr"))},
		"cn-unicode":        {fix, std(1, "ß1155", csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "ß1155"}}))},
		"two-cns": {fix, std(1, testSID, csr(&x509.CertificateRequest{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			cnValue(testSID), cnValue(testSID)}}}))},
		"multivalued-rdn": {fix, std(1, testSID, csr(&x509.CertificateRequest{RawSubject: mustMarshal(tb, pkix.RDNSequence{
			{cnValue(testSID), {Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "CUHK"}}})}))},
		"cn-with-nul": {fix, std(1, "1155\x0000001", csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "1155\x0000001"}}))},
		"asks-for-everything": {fix, std(1, testSID, csr(&x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: testSID},
			DNSNames:       []string{"evil.example", "*.example"},
			EmailAddresses: []string{"root@evil.example"},
			IPAddresses:    []net.IP{net.IPv4(10, 0, 0, 1)},
			URIs:           []*url.URL{evil},
			ExtraExtensions: []pkix.Extension{
				{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: mustMarshal(tb, struct{ IsCA bool }{true})},
			},
		}))},
	}
	for _, name := range []string{"p256", "p384", "rsa2048", "ca-request", "rsa1024", "p521", "p224", "ed25519", "cn-someoneelse", "extra-o"} {
		seeds["openssl-"+name] = enrollSeed{fix, std(1, testSID, fixtureCSR(tb, name+".csr"))}
	}
	return seeds
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestFuzzCorpus checks that the committed seed corpus of FuzzEnrollCheck
// holds every seed; -update writes it. The CSRs made here are signed with a
// fresh key, so the files are compared by name, not content.
func TestFuzzCorpus(t *testing.T) {
	seeds := map[string][]any{}
	for name, s := range enrollSeeds(t) {
		seeds[name] = []any{s.mode, s.body(t)}
	}
	if *update {
		if err := fuzzseed.Write("FuzzEnrollCheck", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzEnrollCheck", seeds, false, "run go test ./ca -run TestFuzzCorpus -update")
}

// enrollmentCodes are the codes an enrollment refusal may carry.
var enrollmentCodes = []wire.Code{
	wire.CodeMalformed, wire.CodeBadCSR, wire.CodeBadCSRSignature, wire.CodeCNMismatch, wire.CodeBadSID, wire.CodeWeakKey,
	wire.CodeTokenRequired, wire.CodeTokenInvalid, wire.CodeTokenExpired, wire.CodeTokenUsed,
	wire.CodeNotOnRoster, wire.CodeBoardNotAuthorized, wire.CodeBadProfile,
	wire.CodeWrongRoot, wire.CodeBadRenewal, wire.CodeSameKey,
}

// csrCodes are the refusals of step 7, the work on the CSR.
var csrCodes = []wire.Code{wire.CodeBadCSR, wire.CodeBadCSRSignature, wire.CodeWeakKey, wire.CodeCNMismatch}

// fuzzRenewKey is the key of the certificate FuzzEnrollCheck renews.
var fuzzRenewKey = sync.OnceValue(func() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// FuzzEnrollCheck decodes arbitrary EnrollRequest bodies as the CA's server
// does and runs the CA's checks (PROTOCOL.md §4.2) on them, against a CA with
// the open policy and a permissive SID pattern, or one with the token policy
// and a roster; the mode byte (fuzzTokenCA and the others) picks the CA and
// fixes up the root and a signature. A refusal must be one of the enrollment
// codes with a sendable sentence; a refusal of the CSR (step 7) must come
// only after the authorization was proven — the CA does no work on a
// stranger's CSR under policy "token"; an accepted request must be
// authorized as the policy requires and yield a certificate built from the
// CA's own template: CN = SID and nothing else from the CSR but its key.
//
// It stops short of the commit (an fsync per execution would make the fuzzer
// crawl); the commit is covered by the unit and concurrency tests.
func FuzzEnrollCheck(f *testing.F) {
	for _, s := range enrollSeeds(f) {
		f.Add(s.mode, s.body(f))
	}
	openCA := newCA(f, func(o *Options) { o.SIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`) })
	tokenCA := newCA(f, func(o *Options) {
		o.Policy = PolicyToken
		o.RosterFile = filepath.Join(o.Dir, "roster.txt")
		if err := os.WriteFile(o.RosterFile, []byte(testSID+"\n1155000002\n"), 0o600); err != nil {
			f.Fatal(err)
		}
	})
	validToken, err := TokenKey(tokenCA.token(f, testSID))
	if err != nil {
		f.Fatal(err)
	}
	renewed, err := tokenCA.Enroll(f.Context(), tokenCA.req(f, wire.ProfileStudent, testSID, makeCSR(f, fuzzRenewKey(), testSID), tokenCA.token(f, testSID)))
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, mode uint8, body []byte) {
		m, err := wire.Unmarshal(append([]byte{byte(wire.TypeEnrollRequest)}, body...))
		if err != nil {
			return // the server answers malformed and closes
		}
		er := m.(*wire.EnrollRequest)
		tc := openCA
		if mode&fuzzTokenCA != 0 {
			tc = tokenCA
		}
		req := Request{Profile: er.Profile, SID: er.SID, CSR: er.CSR, Root: er.Root, Auth: er.Auth,
			TokenKey: er.TokenKey, Certificate: er.Certificate, Signature: er.Signature, Peer: "192.0.2.1:1234"}
		if mode&fuzzFixRoot != 0 {
			req.Root = tc.rootFP
		}
		binding := func() []byte { return wire.EnrollBinding(req.Auth, req.Profile, req.SID, req.Root, req.CSR) }
		switch {
		case mode&fuzzSignToken != 0:
			req.Auth, req.Certificate = wire.AuthToken, nil
			req.TokenKey = validToken.Public().(ed25519.PublicKey)
			req.Signature = ed25519.Sign(validToken, binding())
		case mode&fuzzRenew != 0:
			req.Auth, req.TokenKey, req.Certificate = wire.AuthRenewal, nil, renewed.Certificate.Raw
			if req.Signature, err = keys.Sign(fuzzRenewKey(), rand.Reader, binding()); err != nil {
				t.Fatal(err)
			}
		}
		now := tc.clock.Now()
		c, refusal, err := tc.check(req, now)
		if err != nil {
			t.Fatalf("check failed on its own (not a refusal): %v", err)
		}
		if refusal != nil {
			if !slices.Contains(enrollmentCodes, refusal.Code) {
				t.Fatalf("refusal code %v is not an enrollment code", refusal.Code)
			}
			if refusal.Text == "" {
				t.Fatal("refusal without a sentence")
			}
			if tc == tokenCA && !c.proven && slices.Contains(csrCodes, refusal.Code) {
				t.Fatalf("the CA worked on the CSR of a peer that proved nothing (%v)", refusal)
			}
			var out encodedMessages
			if err := wire.Answer(&out, refusal); err != nil || len(out) != 1 {
				t.Fatalf("the refusal cannot be sent: %v (%d messages)", err, len(out))
			}
			if _, err := json.Marshal(refusedDecision(req, now, refusal)); err != nil {
				t.Fatalf("the refusal cannot be recorded: %v", err)
			}
			return
		}
		if c.again != nil {
			if !keys.SamePublicKey(c.again.PublicKey, c.csr.PublicKey) {
				t.Fatal("answered again a certificate for another key")
			}
			return
		}

		// Accepted: the request was well formed and authorized, and what the
		// CA issues for it is its own template.
		csr := c.csr
		if csr == nil {
			t.Fatal("accepted without a CSR")
		}
		if req.Root != tc.rootFP {
			t.Fatal("accepted a request naming another root")
		}
		if (tc == tokenCA || req.Profile == wire.ProfileBoard) && req.Auth == wire.AuthNone {
			t.Fatal("accepted a request without authorization that the policy requires")
		}
		if req.Auth == wire.AuthToken && !ed25519.Verify(req.TokenKey, binding(), req.Signature) {
			t.Fatal("accepted a token request whose signature does not verify")
		}
		profile, sid := req.Profile, req.SID
		if profile != wire.ProfileStudent && profile != wire.ProfileBoard {
			t.Fatalf("accepted profile %d", profile)
		}
		if len(sid) == 0 || len(sid) > wire.MaxSIDLen || !utf8.ValidString(sid) {
			t.Fatalf("accepted SID %q", sid)
		}
		cert, err := tc.issue(csr.PublicKey, req, now)
		if err != nil {
			t.Fatalf("issue after an accepted check: %v", err)
		}
		if len(cert.Subject.Names) != 1 || cert.Subject.CommonName != sid {
			t.Fatalf("issued subject %v for SID %q", cert.Subject, sid)
		}
		if cert.IsCA || !cert.BasicConstraintsValid {
			t.Fatal("issued a certificate that is not CA:FALSE")
		}
		if len(cert.DNSNames)+len(cert.EmailAddresses)+len(cert.IPAddresses)+len(cert.URIs) != 0 {
			t.Fatal("issued a certificate with names the CSR asked for")
		}
		want := x509.ExtKeyUsageClientAuth
		if profile == wire.ProfileBoard {
			want = x509.ExtKeyUsageServerAuth
		}
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{want}) || len(cert.UnknownExtKeyUsage) != 0 {
			t.Fatalf("issued EKU %v, want [%v]", cert.ExtKeyUsage, want)
		}
		if !keys.SamePublicKey(cert.PublicKey, csr.PublicKey) {
			t.Fatal("issued a certificate for another key")
		}
		if req.Auth == wire.AuthRenewal && keys.SamePublicKey(cert.PublicKey, renewed.Certificate.PublicKey) {
			t.Fatal("renewed to the same key")
		}
		if k, ok := cert.PublicKey.(*ecdsa.PublicKey); ok && k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			t.Fatalf("issued a certificate for ECDSA %s", k.Curve.Params().Name)
		}
	})
}

// encodedMessages is a wire.MessageReadWriter that encodes what is written to
// it and keeps the encodings; it has nothing to read.
type encodedMessages [][]byte

func (e *encodedMessages) WriteMessage(m wire.Message) error {
	b, err := wire.Marshal(m)
	if err != nil {
		return err
	}
	*e = append(*e, b)
	return nil
}

func (e *encodedMessages) ReadMessage() (wire.Message, error) { return nil, io.EOF }
