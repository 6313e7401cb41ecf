package ca

import (
	"crypto/ecdsa"
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
	"strings"
	"testing"
	"unicode/utf8"

	"pkiboard/internal/fuzzseed"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

var update = flag.Bool("update", false, "rewrite the fixtures and seed corpora under testdata/")

// Tokens in a FuzzEnrollCheck input that stand for secrets made at run time:
// the fuzz target swaps in a valid token for testSID and the CA's board
// secret, so that the fuzzer reaches the paths behind them.
const (
	fuzzValidToken  = "valid-token"
	fuzzBoardSecret = "board-secret"
)

// enrollSeed is one seed of FuzzEnrollCheck.
type enrollSeed struct {
	profile uint8
	sid     string
	csr     []byte
	token   string
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
	seeds := map[string]enrollSeed{
		"garbage":                 {1, testSID, []byte("not a CSR at all"), ""},
		"empty":                   {1, testSID, nil, ""},
		"pem":                     {1, testSID, pemCSR, ""},
		"trailing-byte":           {1, testSID, append(slices.Clone(p256), 0), ""},
		"broken-sig":              {1, testSID, bad, ""},
		"truncated":               {1, testSID, p256[:len(p256)/2], ""},
		"profile-0":               {0, testSID, p256, ""},
		"profile-255":             {255, testSID, p256, ""},
		"sid-65":                  {1, strings.Repeat("1", 65), p256, ""},
		"sid-bad-utf8":            {1, "1155\xff00001", p256, ""},
		"sid-board-name":          {1, testBoard, csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: testBoard}}), ""},
		"token-valid":             {1, testSID, p256, fuzzValidToken},
		"token-wrong":             {1, testSID, p256, "pkbt_" + strings.Repeat("A", 43)},
		"token-other-sid":         {1, "1155000002", csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "1155000002"}}), fuzzValidToken},
		"token-long":              {1, testSID, p256, strings.Repeat("t", 255)},
		"board-secret":            {2, testBoard, fixtureCSR(tb, "board.csr"), fuzzBoardSecret},
		"board-no-secret":         {2, testBoard, fixtureCSR(tb, "board.csr"), ""},
		"board-as-student-secret": {1, testSID, p256, fuzzBoardSecret},
		"cn-unicode":              {1, "ß1155", csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "ß1155"}}), ""},
		"two-cns": {1, testSID, csr(&x509.CertificateRequest{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
			cnValue(testSID), cnValue(testSID)}}}), ""},
		"multivalued-rdn": {1, testSID, csr(&x509.CertificateRequest{RawSubject: mustMarshal(tb, pkix.RDNSequence{
			{cnValue(testSID), {Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "CUHK"}}})}), ""},
		"cn-with-nul": {1, "1155\x0000001", csr(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "1155\x0000001"}}), ""},
		"asks-for-everything": {1, testSID, csr(&x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: testSID},
			DNSNames:       []string{"evil.example", "*.example"},
			EmailAddresses: []string{"root@evil.example"},
			IPAddresses:    []net.IP{net.IPv4(10, 0, 0, 1)},
			URIs:           []*url.URL{evil},
			ExtraExtensions: []pkix.Extension{
				{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: mustMarshal(tb, struct{ IsCA bool }{true})},
			},
		}), ""},
	}
	for _, name := range []string{"p256", "p384", "rsa2048", "ca-request", "rsa1024", "p521", "p224", "ed25519", "cn-someoneelse", "extra-o"} {
		seeds["openssl-"+name] = enrollSeed{1, testSID, fixtureCSR(tb, name+".csr"), ""}
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
		seeds[name] = []any{s.profile, s.sid, s.csr, s.token}
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
	wire.CodeBadCSR, wire.CodeBadCSRSignature, wire.CodeCNMismatch, wire.CodeBadSID, wire.CodeWeakKey,
	wire.CodeTokenRequired, wire.CodeTokenInvalid, wire.CodeTokenExpired, wire.CodeTokenUsed,
	wire.CodeNotOnRoster, wire.CodeBoardNotAuthorized, wire.CodeBadProfile,
}

// FuzzEnrollCheck runs the CA's enrollment checks (PROTOCOL.md §4) on
// arbitrary requests — profile, SID, CSR bytes, token — against a CA with the
// open policy and a permissive SID pattern (no token given) or with the token
// policy and a roster (a token given). A refusal must be one of the
// enrollment codes with a sendable sentence that never echoes the token; an
// accepted request must yield a certificate built from the CA's own template:
// CN = SID and nothing else from the CSR but its key.
//
// It stops short of the commit (an fsync per execution would make the fuzzer
// crawl); the commit is covered by the unit and concurrency tests.
func FuzzEnrollCheck(f *testing.F) {
	for _, s := range enrollSeeds(f) {
		f.Add(s.profile, s.sid, s.csr, s.token)
	}
	openCA := newCA(f, func(o *Options) { o.SIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`) })
	tokenCA := newCA(f, func(o *Options) {
		o.Policy = PolicyToken
		o.RosterFile = filepath.Join(o.Dir, "roster.txt")
		if err := os.WriteFile(o.RosterFile, []byte(testSID+"\n1155000002\n"), 0o600); err != nil {
			f.Fatal(err)
		}
	})
	validToken, _, err := tokenCA.CreateToken(testSID, 0)
	if err != nil {
		f.Fatal(err)
	}
	secrets := map[*testCA]string{openCA: openCA.boardSecret(f), tokenCA: tokenCA.boardSecret(f)}

	f.Fuzz(func(t *testing.T, profile uint8, sid string, csrDER []byte, token string) {
		tc := openCA
		if token != "" {
			tc = tokenCA
		}
		switch token {
		case fuzzValidToken:
			token = validToken
		case fuzzBoardSecret:
			token = secrets[tc]
		}
		req := Request{Profile: profile, SID: sid, CSR: csrDER, Token: token, Peer: "192.0.2.1:1234"}
		now := tc.clock.Now()
		csr, _, refusal, err := tc.check(req, now)
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
			if len(token) >= 8 && strings.Contains(refusal.Text, token) {
				t.Fatalf("the refusal echoes the token: %q", refusal.Text)
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

		// Accepted: the request was well formed, and what the CA issues for it
		// is its own template.
		if csr == nil {
			t.Fatal("accepted without a CSR")
		}
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
