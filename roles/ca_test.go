package roles

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/internal/sqlstore"
	"pkiboard/internal/testcert"
	"pkiboard/wire"
)

// TestCALogsRootReady checks the CA's STEP 0 line on the first start and on
// the next: the facts package ca reports (ca TestOpenCreatesRoot and
// TestReopenLoadsSameRoot check them), with the fields the README shows.
func TestCALogsRootReady(t *testing.T) {
	o := ca.Options{
		Dir:        t.TempDir(),
		Create:     true,
		Subject:    pkix.Name{CommonName: "CUHK Test Root CA"},
		Policy:     ca.PolicyOpen,
		SIDPattern: regexp.MustCompile(`^[0-9]{10}$`),
		BoardName:  "blackboard",
	}
	for _, created := range []bool{true, false} {
		auth, err := ca.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		core, logs := observer.New(zapcore.InfoLevel)
		logRootReady(zap.New(core), auth, o.Dir)
		root := auth.Root()
		auth.Close()
		lines := logs.FilterMessage("STEP 0: root of trust ready").All()
		if len(lines) != 1 {
			t.Fatalf("created %v: got %d STEP 0 lines, want 1: %v", created, len(lines), logs.All())
		}
		got := lines[0].ContextMap()
		want := map[string]any{
			"fingerprint":   keys.FingerprintHex(root),
			"subject":       "CN=CUHK Test Root CA",
			"key":           "ECDSA P-256",
			"key_encrypted": false,
			"not_after":     root.NotAfter,
			"created":       created,
			"dir":           o.Dir,
		}
		for k, v := range want {
			if fmt.Sprint(got[k]) != fmt.Sprint(v) {
				t.Errorf("created %v: field %s: got %v want %v", created, k, got[k], v)
			}
		}
	}
}

// TestCALogsIssued checks the CA's STEP 2 line, logged from what the server's
// OnIssued is told (ca TestServerEnrolls checks what it is told).
func TestCALogsIssued(t *testing.T) {
	k := testcert.Key(t)
	cert := testcert.Issue(t, &x509.Certificate{SerialNumber: big.NewInt(0x1155), Subject: pkix.Name{CommonName: "1155000001"},
		NotAfter: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)}, nil, k.Public(), k)
	core, logs := observer.New(zapcore.InfoLevel)
	logIssued(zap.New(core))(ca.Request{Profile: wire.ProfileStudent, SID: "1155000001", Peer: "192.0.2.1:1234"}, &ca.Issued{Certificate: cert})
	lines := logs.FilterMessage("STEP 2: certificate issued").All()
	if len(lines) != 1 {
		t.Fatalf("got %d STEP 2 lines, want 1: %v", len(lines), logs.All())
	}
	got := lines[0].ContextMap()
	want := map[string]any{
		"sid":       "1155000001",
		"serial":    keys.SerialHex(cert.SerialNumber),
		"profile":   wire.ProfileStudent,
		"peer":      "192.0.2.1:1234",
		"not_after": cert.NotAfter,
	}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("field %s: got %v want %v", k, got[k], v)
		}
	}
}

// TestCAStatsCountAnonymousRefusals: the CA's stats carry its anonymous
// refusals by code name (PROTOCOL.md §7).
func TestCAStatsCountAnonymousRefusals(t *testing.T) {
	srv := &server{limits: testLimits(1)}
	res, err := statsOp("ca", srv, func(st *Stats) error { st.AnonymousRefusals = map[string]uint64{"token-invalid": 3}; return nil })(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"anonymous_refusals":{"token-invalid":3}`) {
		t.Errorf("stats JSON %s lacks the anonymous refusals", data)
	}
}

// TestCAOperatorCommandsBesideTheDaemon: while the CA's store is held by its
// daemon (here an Authority open in this process, with no socket answering),
// `certs` and `crl` read the store and the files directly, without the root
// key's passphrase; a write (`token`) that finds no socket tries to open the
// store itself and is refused by the daemon's lock: it never writes beside
// the daemon.
func TestCAOperatorCommandsBesideTheDaemon(t *testing.T) {
	cfg := config.Default()
	cfg.CA.DataDir = t.TempDir()
	cfg.CA.KeyPassphraseEnv = "PKIBOARD_TEST_CA_PASSPHRASE"
	t.Setenv(cfg.CA.KeyPassphraseEnv, "correct horse battery staple")
	auth, err := openAuthority(cfg, zap.NewNop(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	key := testcert.Key(t)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "1155000001"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := auth.Enroll(t.Context(), ca.Request{Profile: wire.ProfileStudent, SID: "1155000001", CSR: csr, Root: keys.Fingerprint(auth.Root())})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Revoke(t.Context(), iss.Certificate.SerialNumber, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	serial := keys.SerialHex(iss.Certificate.SerialNumber)

	os.Unsetenv(cfg.CA.KeyPassphraseEnv) // reading needs no key
	var out bytes.Buffer
	if err := ListCertificates(t.Context(), cfg, "", true, &out); err != nil {
		t.Fatalf("certs beside the daemon: %v", err)
	}
	var views []ca.CertView
	if err := json.Unmarshal(out.Bytes(), &views); err != nil || len(views) != 1 || views[0].Serial != serial || views[0].Status != "revoked" {
		t.Errorf("certs --json: %v, %s; want %s revoked", err, out.Bytes(), serial)
	}
	out.Reset()
	if err := PrintCRL(t.Context(), cfg, false, &out); err != nil {
		t.Fatalf("crl beside the daemon: %v", err)
	}
	if s := out.String(); !strings.Contains(s, "CRL number 2,") || !strings.Contains(s, serial) || strings.Contains(s, "warning") {
		t.Errorf("crl:\n%s\nwant CRL 2 listing %s, and no warning", s, serial)
	}

	t.Setenv(cfg.CA.KeyPassphraseEnv, "correct horse battery staple")
	err = CreateToken(t.Context(), cfg, TokenArgs{SID: "1155000002"}, &out)
	if !errors.Is(err, sqlstore.ErrLocked) || !strings.Contains(err.Error(), "is the daemon running?") {
		t.Errorf("token beside the daemon, without its socket: got %v, want the lock's refusal", err)
	}
}
