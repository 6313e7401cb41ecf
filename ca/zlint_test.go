package ca

import (
	"slices"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"pkiboard/wire"
)

// zlintExcludedSources are the lint sources that do not apply to pkiboard:
// each is the policy of a public web PKI or of a kind of certificate the CA
// does not issue. What remains are the RFC lints (RFC 5280, 5480, 3279,
// 5891, 6960, 6962, 8813) and zlint's community lints.
var zlintExcludedSources = lint.SourceList{
	// CA/Browser Forum Baseline Requirements: rules for publicly-trusted TLS
	// server certificates (SANs with registered domain names, AIA and CRL
	// distribution point URLs, certificate policies, no SKI in leaves). The
	// course PKI is private: its root is in no browser's store, the board is
	// found by address and name from configuration, not by DNS.
	lint.CABFBaselineRequirements,
	// CA/B Forum Extended Validation Guidelines: EV TLS certificates.
	lint.CABFEVGuidelines,
	// CA/B Forum Code Signing and S/MIME Baseline Requirements: kinds of
	// certificate the CA does not issue.
	lint.CABFCSBaselineRequirements,
	lint.CABFSMIMEBaselineRequirements,
	// Root store policies of Mozilla, Apple and Chrome: for CAs in those
	// stores.
	lint.MozillaRootStorePolicy,
	lint.AppleRootStorePolicy,
	lint.ChromeRootStorePolicy,
	// ETSI EN 319 412: European qualified certificates.
	lint.EtsiEsi,
}

// zlintAllowed lists lints whose warnings or errors are accepted even though
// their source is kept, each with the reason it does not apply and the
// certificates it is allowed for (nil when: for any).
var zlintAllowed = map[string]struct {
	reason string
	when   func(*zx509.Certificate) bool
}{
	// RFC 5280 §4.2.1.12 lists digitalSignature and keyAgreement as the key
	// usages consistent with id-kp-clientAuth, for TLS client authentication.
	// A pkiboard student's RSA key also receives the session key by RSA-OAEP
	// (PROTOCOL.md §5.1), which RFC 5280 §4.2.1.3 calls keyEncipherment, so
	// its certificate says so. Allowed only for RSA student certificates.
	"e_key_usage_and_extended_key_usage_inconsistent": {
		reason: "an RSA student key receives the session key by RSA-OAEP: keyEncipherment with clientAuth",
		when: func(c *zx509.Certificate) bool {
			return c != nil && c.PublicKeyAlgorithm == zx509.RSA &&
				slices.Equal(c.ExtKeyUsage, []zx509.ExtKeyUsage{zx509.ExtKeyUsageClientAuth}) &&
				c.KeyUsage == zx509.KeyUsageDigitalSignature|zx509.KeyUsageKeyEncipherment
		},
	},
}

func zlintRegistry(t *testing.T) lint.Registry {
	t.Helper()
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: zlintExcludedSources})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// checkLints fails the test for every warning, error or fatal result that
// zlintAllowed does not allow for cert (nil for a CRL).
func checkLints(t *testing.T, what string, cert *zx509.Certificate, results *zlint.ResultSet) {
	t.Helper()
	if len(results.Results) == 0 {
		t.Fatalf("%s: no lint ran", what)
	}
	var names []string
	for name := range results.Results {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		r := results.Results[name]
		switch {
		case r.Status < lint.Warn:
			if r.Status == lint.Notice {
				t.Logf("%s: notice %s %s", what, name, r.Details)
			}
		case zlintAllowed[name].when != nil && zlintAllowed[name].when(cert):
			t.Logf("%s: %s %s allowed: %s", what, r.Status, name, zlintAllowed[name].reason)
		default:
			t.Errorf("%s: %s %s [%s]: %s", what, r.Status, name, r.LintMetadata.Source, r.Details)
		}
	}
}

// TestZlint lints the root, student and board certificates and a CRL with
// entries, for an ECDSA and an RSA root.
func TestZlint(t *testing.T) {
	reg := zlintRegistry(t)
	for _, alg := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048"} {
		t.Run(alg, func(t *testing.T) {
			tc := newCA(t, func(o *Options) { o.KeyAlgorithm = alg })
			certs := map[string][]byte{"root": tc.Root().Raw}
			for _, csr := range []string{"p256.csr", "p384.csr", "rsa2048.csr", "ca-request.csr"} {
				iss, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileStudent, testSID, fixtureCSR(t, csr), ""))
				if err != nil {
					t.Fatal(err)
				}
				certs["student "+csr] = iss.Certificate.Raw
				if csr == "p256.csr" {
					if _, err := tc.Revoke(t.Context(), iss.Certificate.SerialNumber, ReasonKeyCompromise); err != nil {
						t.Fatal(err)
					}
				}
				if csr == "rsa2048.csr" {
					if _, err := tc.Revoke(t.Context(), iss.Certificate.SerialNumber, ReasonUnspecified); err != nil {
						t.Fatal(err)
					}
				}
			}
			board, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileBoard, testBoard, fixtureCSR(t, "board.csr"), tc.boardToken(t)))
			if err != nil {
				t.Fatal(err)
			}
			certs["board"] = board.Certificate.Raw
			for what, der := range certs {
				c, err := zx509.ParseCertificate(der)
				if err != nil {
					t.Fatalf("%s: zcrypto cannot parse it: %v", what, err)
				}
				checkLints(t, what, c, zlint.LintCertificateEx(c, reg))
			}
			crl, err := zx509.ParseRevocationList(currentCRL(t, tc).Raw)
			if err != nil {
				t.Fatalf("zcrypto cannot parse the CRL: %v", err)
			}
			if len(crl.RevokedCertificates) != 2 {
				t.Errorf("CRL has %d entries want 2", len(crl.RevokedCertificates))
			}
			checkLints(t, "CRL", nil, zlint.LintRevocationListEx(crl, reg))
		})
	}
}

// TestZlintExcludesOnlyPolicySources guards the exclusion list: the RFC and
// community lints still run.
func TestZlintExcludesOnlyPolicySources(t *testing.T) {
	reg := zlintRegistry(t)
	kept := map[lint.LintSource]bool{}
	for _, s := range reg.Sources() {
		kept[s] = true
	}
	for _, s := range []lint.LintSource{lint.RFC5280, lint.RFC5480, lint.Community} {
		if !kept[s] {
			t.Errorf("source %s is not linted", s)
		}
	}
	for _, s := range zlintExcludedSources {
		if kept[s] {
			t.Errorf("source %s is still linted", s)
		}
	}
	if n := len(reg.BySource(lint.RFC5280)); n < 50 {
		t.Errorf("only %d RFC 5280 lints", n)
	}
}
