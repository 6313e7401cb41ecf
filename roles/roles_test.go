package roles

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"pkiboard/internal/config"
	"pkiboard/internal/testcert"
	"pkiboard/session"
)

func TestMinBoardFrameFitsARecord(t *testing.T) {
	if config.MinBoardFrame != session.MaxRecord {
		t.Errorf("config.MinBoardFrame = %d, session.MaxRecord = %d: they must agree", config.MinBoardFrame, session.MaxRecord)
	}
}

// TestRootPoolIsShared checks that sessions with the same root share one pool,
// which the session's verified-chain cache is keyed by.
func TestRootPoolIsShared(t *testing.T) {
	k := testcert.Key(t)
	rootA := testcert.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "A"}, IsCA: true, BasicConstraintsValid: true}, nil, k.Public(), k)
	rootB := testcert.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "B"}, IsCA: true, BasicConstraintsValid: true}, nil, k.Public(), k)
	var st student
	a1, a2, b := st.rootPool(rootA), st.rootPool(rootA), st.rootPool(rootB)
	if a1 != a2 {
		t.Error("the same root gave two pools")
	}
	if a1 == b {
		t.Error("two roots gave the same pool")
	}
	if !a1.Equal(certPoolOf(rootA)) || !b.Equal(certPoolOf(rootB)) {
		t.Error("a pool does not hold exactly its root")
	}
}

func certPoolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}
