package session

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/wire"
)

// serveHello runs the board of sc on one ClientHello payload in memory and
// returns its error and the frames it wrote.
func serveHello(tb testing.TB, sc *ServerConfig, hello []byte) (error, [][]byte) {
	tb.Helper()
	m := newMemConn(frame(hello))
	_, err := Server(wire.NewConn(m, wire.Options{MaxFrame: boardMaxFrame}), sc)
	return err, frames(tb, m.out.Bytes())
}

// wantOnlyError checks that the board refused with code and wrote nothing but
// its Error: no ServerHello, so no session key sealed, no encapsulation, no
// signature.
func wantOnlyError(t *testing.T, err error, out [][]byte, code wire.Code) {
	t.Helper()
	wantRefusal(t, "board", err, code)
	if len(out) != 1 || wire.Type(out[0][0]) != wire.TypeError {
		t.Errorf("the board wrote %d frames, want its Error alone", len(out))
	}
	var he *HandshakeError
	if errors.As(err, &he) && (he.Proven || he.Step != 3) {
		t.Errorf("a refused hello: step %d, proven %v; want step 3, not proven", he.Step, he.Proven)
	}
}

// TestReplayedHello replays a hello the board accepted: the second time it
// is refused stale-hello, before any work on the certificate, while a new
// hello of the same student is accepted.
func TestReplayedHello(t *testing.T) {
	p := pki(t)
	sc, cc := p.serverConfig(), p.clientConfig("p256")
	hello := recordHello(t, cc)
	if err, _ := serveHello(t, sc, hello); err != nil {
		t.Fatalf("the original hello: %v", err)
	}
	if sc.Replays.Len() != 1 {
		t.Fatalf("the replay cache holds %d hellos after one session, want 1", sc.Replays.Len())
	}
	err, out := serveHello(t, sc, hello)
	wantOnlyError(t, err, out, wire.CodeStaleHello)
	if ref := (*wire.Refusal)(nil); errors.As(err, &ref) && !strings.Contains(ref.Text, "already used") {
		t.Errorf("refusal %q does not say the hello was used", ref.Text)
	}
	// What the board looked at: the replay is refused before the
	// certificate check (a board whose root is another refuses it the same).
	other := p.serverConfig()
	other.Replays = sc.Replays
	other.Root = p.other.cert
	err, out = serveHello(t, other, hello)
	wantOnlyError(t, err, out, wire.CodeStaleHello)

	if err, _ := serveHello(t, sc, recordHello(t, cc)); err != nil {
		t.Errorf("a new hello of the same student: %v", err)
	}
}

// TestConcurrentReplay sends one hello to the board eight times at once:
// the board records a hello at the moment the student proves possession, so
// exactly one goes on to step 4, and the others are refused stale-hello.
func TestConcurrentReplay(t *testing.T) {
	p := pki(t)
	sc := p.serverConfig()
	hello := recordHello(t, p.clientConfig("p256"))
	const n = 8
	errs := make([]error, n)
	outs := make([][][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i], outs[i] = serveHello(t, sc, hello) })
	}
	wg.Wait()
	ok := 0
	for i := range n {
		if errs[i] == nil {
			ok++
			continue
		}
		wantOnlyError(t, errs[i], outs[i], wire.CodeStaleHello)
	}
	if ok != 1 {
		t.Errorf("%d of %d copies of one hello were accepted, want 1", ok, n)
	}
}

// TestHelloWindow checks the edges of board.hello_window, either way.
func TestHelloWindow(t *testing.T) {
	p := pki(t)
	const window = 2 * time.Minute
	boardNow := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		offset time.Duration // the student's clock minus the board's
		ok     bool
	}{
		{0, true}, {window, true}, {-window, true},
		{window + time.Millisecond, false}, {-window - time.Millisecond, false},
	} {
		sc, cc := p.serverConfig(), p.clientConfig("p256")
		sc.HelloWindow = window
		sc.Now = func() time.Time { return boardNow }
		cc.Now = func() time.Time { return boardNow.Add(tt.offset) }
		err, _ := serveHello(t, sc, recordHello(t, cc))
		if tt.ok && err != nil {
			t.Errorf("a hello %v off the board's clock: %v", tt.offset, err)
		}
		if !tt.ok {
			wantRefusal(t, "board", err, wire.CodeStaleHello)
			if ref := (*wire.Refusal)(nil); errors.As(err, &ref) && !strings.Contains(ref.Text, "2030-06-01T12:00:00Z") {
				t.Errorf("refusal %q does not give the board's time", ref.Text)
			}
		}
	}
}

// TestReplayCacheBound checks that a full cache forgets its earliest hello
// and from then on refuses every hello not later than the forgotten one: no
// replay gets through by being forgotten. Hellos past the window are dropped.
func TestReplayCacheBound(t *testing.T) {
	c := NewReplayCache(3)
	h := func(i byte) [32]byte { return sha256.Sum256([]byte{i}) }
	for i := byte(1); i <= 3; i++ {
		if v := c.insert(h(i), uint64(i)*1000, 0); v != helloFresh {
			t.Fatalf("hello %d: verdict %d", i, v)
		}
	}
	if v := c.insert(h(2), 2000, 0); v != helloReplayed {
		t.Errorf("hello 2 again: verdict %d, want replayed", v)
	}
	if v := c.insert(h(4), 4000, 0); v != helloFresh || c.Len() != 3 {
		t.Fatalf("hello 4 into a full cache: verdict %d, %d held", v, c.Len())
	}
	// Hello 1 was forgotten: it, and any hello not later, is refused.
	if v := c.check(h(1), 1000); v != helloForgotten {
		t.Errorf("the forgotten hello 1: verdict %d, want forgotten", v)
	}
	if v := c.insert(h(9), 999, 0); v != helloForgotten {
		t.Errorf("a new hello older than the forgotten one: verdict %d, want forgotten", v)
	}
	if v := c.insert(h(5), 5000, 0); v != helloFresh {
		t.Errorf("a later hello: verdict %d", v)
	}
	// The window moves past hellos 3 and 4: they go, and the cache has room.
	if v := c.insert(h(6), 6000, 4001); v != helloFresh || c.Len() != 2 {
		t.Errorf("after expiry: verdict %d, %d held, want fresh and 2 (hellos 5 and 6)", v, c.Len())
	}
}

// TestCertificateCache checks that the outcome of the root check is
// remembered per certificate, success and failure alike, so that a
// certificate seen again costs no parse and no signature verification.
func TestCertificateCache(t *testing.T) {
	p := pki(t)
	good := p.students["p256"].leaf().Raw
	bad := p.otherStudent().leaf().Raw
	for name, der := range map[string][]byte{"good": good, "other root": bad, "garbage": []byte("not DER")} {
		first := checkSignedByRoot(der, p.root.cert)
		if again := checkSignedByRoot(der, p.root.cert); again != first {
			t.Errorf("%s: the second check was done again", name)
		}
	}
	if s := checkSignedByRoot(good, p.other.cert); s.fault != faultUnknownCA {
		t.Errorf("the cache answered for another root: fault %d", s.fault)
	}
}

// bombIssuer is a CA key of the adversary's, and its certificate named
// exactly like the course root: what the chain bomb of issue 12 put in a hello
// (RSA-8192 there; the size does not matter, since the board never uses it).
type bombIssuer struct {
	cert *x509.Certificate
	key  any
}

var (
	bombRSA = sync.OnceValue(func() bombIssuer { k, _ := rsa.GenerateKey(rand.Reader, 2048); return newBombIssuer(k, &k.PublicKey) })
	bombEC  = sync.OnceValue(func() bombIssuer { k := ecKey(elliptic.P256(), "bomb"); return newBombIssuer(k, &k.PublicKey) })
)

func newBombIssuer(key any, pub any) bombIssuer {
	p := pki(testingTB{})
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: p.root.cert.Subject, NotBefore: pkiStart, NotAfter: pkiEnd,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return bombIssuer{cert: c, key: key}
}

// bombLeaf is a student certificate for testSID from the bomb issuer: its
// issuer's name is the root's.
func bombLeaf(tb testing.TB, b bombIssuer) []byte {
	tb.Helper()
	p := pki(tb)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(100), Subject: pkix.Name{CommonName: testSID}, NotBefore: pkiStart, NotAfter: pkiEnd,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.cert, p.keys["p256"].Public(), b.key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// TestChainBomb sends hellos whose certificate's issuer is named like the
// root but is the adversary's CA: refused unknown-ca with nothing but the
// root in the check, and without a ServerHello.
func TestChainBomb(t *testing.T) {
	p := pki(t)
	for name, b := range map[string]bombIssuer{"rsa": bombRSA(), "ecdsa": bombEC()} {
		t.Run(name, func(t *testing.T) {
			cc := p.clientConfig("p256")
			leaf := bombLeaf(t, b)
			cc.testHookClientHello = func(ch *wire.ClientHello) { ch.Certificate = leaf }
			err, out := serveHello(t, p.serverConfig(), recordHello(t, cc))
			wantOnlyError(t, err, out, wire.CodeUnknownCA)
		})
	}
}
