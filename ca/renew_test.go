package ca

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// TestRenewal renews a student's and the board's certificate: the new one
// has the same name and profile and a new key; the old one is revoked with
// reason superseded in the same transaction, records its successor, and is
// on the CRL published at once; it cannot renew again.
func TestRenewal(t *testing.T) {
	for _, tt := range []struct {
		name    string
		profile uint8
		sid     string
	}{{"student", wire.ProfileStudent, testSID}, {"board", wire.ProfileBoard, testBoard}} {
		t.Run(tt.name, func(t *testing.T) {
			tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
			token := tc.token
			if tt.profile == wire.ProfileBoard {
				token = func(testing.TB, string) string { return tc.boardToken(t) }
			}
			first, key, err := tc.enrollKey(t, tt.profile, tt.sid, token(t, tt.sid))
			if err != nil {
				t.Fatal(err)
			}
			crlBefore := currentCRL(t, tc)
			tc.clock.Add(time.Hour)
			second, nextKey, err := tc.renew(t, first.Certificate, key)
			if err != nil {
				t.Fatal(err)
			}
			cert := second.Certificate
			if cert.Subject.CommonName != tt.sid || !keys.SamePublicKey(cert.PublicKey, nextKey.Public()) ||
				second.Renewed.Cmp(first.Certificate.SerialNumber) != 0 || second.Again {
				t.Errorf("renewed certificate: CN %q, renewed %v, again %v", cert.Subject.CommonName, second.Renewed, second.Again)
			}
			if !bytes.Equal(cert.RawSubject, first.Certificate.RawSubject) || cert.ExtKeyUsage[0] != first.Certificate.ExtKeyUsage[0] {
				t.Error("the renewal changed the name or the profile")
			}
			old, _, err := tc.Certificate(first.Certificate.SerialNumber)
			if err != nil {
				t.Fatal(err)
			}
			if old.Status != StatusRevoked || old.Reason != ReasonSuperseded || !old.RevokedAt.Equal(tc.now()) || old.SupersededBy.Cmp(cert.SerialNumber) != 0 {
				t.Errorf("old certificate: %+v; want revoked superseded at %s by %s", old, tc.now(), keys.SerialHex(cert.SerialNumber))
			}
			now, _, _ := tc.Certificate(cert.SerialNumber)
			if now.Auth != "renewal" || now.Renews.Cmp(first.Certificate.SerialNumber) != 0 {
				t.Errorf("new certificate record: auth %q, renews %v", now.Auth, now.Renews)
			}
			crl := currentCRL(t, tc)
			if crl.Number.Cmp(crlBefore.Number) <= 0 || crlReasons(t, crl)[keys.SerialHex(first.Certificate.SerialNumber)] != ReasonSuperseded {
				t.Errorf("CRL %v after the renewal: %v; want a new CRL listing the old certificate as superseded", crl.Number, crlReasons(t, crl))
			}
			// Renewed once: the old certificate cannot renew again, for
			// another key.
			_, _, err = tc.renew(t, first.Certificate, key)
			wantRefusal(t, err, wire.CodeBadRenewal)
			// The new one renews in turn.
			if _, _, err := tc.renew(t, cert, nextKey); err != nil {
				t.Fatalf("renewing the renewed certificate: %v", err)
			}
		})
	}
}

// TestTokenIdempotent: a token spent on a certificate for the CSR's key
// answers that certificate again — after a lost answer, with a new CSR for
// the same key — and spends nothing twice.
func TestTokenIdempotent(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
	tok := tc.token(t, testSID)
	key := newKey(t)
	first, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, key, testSID), tok))
	if err != nil {
		t.Fatal(err)
	}
	tc.clock.Add(time.Minute)
	again, err := tc.Enroll(t.Context(), tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, key, testSID), tok))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Again || !bytes.Equal(again.Certificate.Raw, first.Certificate.Raw) {
		t.Errorf("again %v, same certificate %v; want the first certificate answered again", again.Again, bytes.Equal(again.Certificate.Raw, first.Certificate.Raw))
	}
	if certs, _ := tc.Certificates(); len(certs) != 1 {
		t.Errorf("%d certificates stored; want 1", len(certs))
	}
	// Another key: the token is spent.
	_, err = tc.Enroll(t.Context(), tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, newKey(t), testSID), tok))
	wantRefusal(t, err, wire.CodeTokenUsed)
}

// TestRenewalIdempotent: a renewal already done to the CSR's key answers the
// new certificate again, and supersedes nothing twice.
func TestRenewalIdempotent(t *testing.T) {
	tc := newCA(t, nil)
	first, key, err := tc.enrollKey(t, wire.ProfileStudent, testSID, "")
	if err != nil {
		t.Fatal(err)
	}
	next := newKey(t)
	renew := func() (*Issued, error) {
		r := tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, next, testSID), "")
		signRenewal(t, &r, first.Certificate, key)
		return tc.Enroll(t.Context(), r)
	}
	second, err := renew()
	if err != nil {
		t.Fatal(err)
	}
	crl := currentCRL(t, tc)
	again, err := renew()
	if err != nil {
		t.Fatal(err)
	}
	if !again.Again || !bytes.Equal(again.Certificate.Raw, second.Certificate.Raw) {
		t.Error("the renewal asked again was not answered with its certificate")
	}
	if certs, _ := tc.Certificates(); len(certs) != 2 {
		t.Errorf("%d certificates stored; want 2", len(certs))
	}
	if n := currentCRL(t, tc).Number; n.Cmp(crl.Number) != 0 {
		t.Errorf("the CRL number moved from %v to %v on a repeated renewal", crl.Number, n)
	}
}

// TestStolenStoreEnrollsNobody takes everything the store keeps about
// unspent tokens — their public keys, SIDs, profiles — and shows that no
// request made from it is accepted: the signature needs the token's private
// key, which is derived from the token and stored nowhere.
func TestStolenStoreEnrollsNobody(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
	tc.token(t, testSID)
	tc.boardToken(t)
	type stolen struct {
		pub []byte
		rec tokenRecord
	}
	var loot []stolen
	err := tc.db.View(func(tx *sql.Tx) error {
		// Every column of the table: none holds anything of the token but
		// its public key.
		cols, err := tx.Query(`SELECT name FROM pragma_table_info('tokens')`)
		if err != nil {
			return err
		}
		defer cols.Close()
		for cols.Next() {
			var name string
			if err := cols.Scan(&name); err != nil {
				return err
			}
			switch name {
			case "public_key", "sid", "profile", "created", "expires", "used_at", "serial", "cancelled":
			default:
				t.Errorf("the tokens table has the column %q", name)
			}
		}
		rows, err := tx.Query(`SELECT public_key FROM tokens`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var pub []byte
			if err := rows.Scan(&pub); err != nil {
				return err
			}
			rec, _, err := getToken(tx, pub)
			if err != nil {
				return err
			}
			loot = append(loot, stolen{pub, rec})
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(loot) != 3 { // the first start's board token, and the two made here
		t.Fatalf("%d token records, want 3", len(loot))
	}
	for _, l := range loot {
		// The best a thief can do: the public key, and a signature made with
		// a key derived from what he holds.
		for _, guess := range [][]byte{l.pub, []byte(l.rec.SID), make([]byte, 32)} {
			forged := tokenKeyFromSecret(guess)
			r := tc.req(t, l.rec.Profile, l.rec.SID, makeCSR(t, newKey(t), l.rec.SID), "")
			r.Auth, r.TokenKey = wire.AuthToken, l.pub
			r.Signature = ed25519.Sign(forged, wire.EnrollBinding(r.Auth, r.Profile, r.SID, r.Root, r.CSR))
			_, err := tc.Enroll(t.Context(), r)
			wantRefusal(t, err, wire.CodeTokenInvalid)
		}
	}
}

// TestWrongPinSpendsNothing: a client with a wrong pinned fingerprint names
// it in its request (PROTOCOL.md §4.1), the CA refuses wrong-root before
// anything is spent, and the token stays unused.
func TestWrongPinSpendsNothing(t *testing.T) {
	s := newServerCA(t, nil)
	s.Authority.o.Policy = PolicyToken
	tok := s.token(t, testSID)
	dir := t.TempDir()
	wrong := bytes.Repeat([]byte{0xab}, 32)
	_, err := s.client.Enroll(t.Context(), EnrollOptions{SID: testSID, Token: tok, OutDir: dir, RootFingerprint: wrong, KeyAlgorithm: "ecdsa-p256"})
	var peer *wire.Error
	if !errors.As(err, &peer) || peer.Code != wire.CodeWrongRoot {
		t.Fatalf("got %v, want the CA's wrong-root", err)
	}
	for _, name := range []string{CertFile, RootFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s was written after a refusal: %v", name, err)
		}
	}
	rec := tokenRecordOf(t, s.testCA, tok)
	if !rec.UsedAt.IsZero() {
		t.Error("the token was spent")
	}
	// With the right pin the same token works.
	fp := keys.Fingerprint(s.Root())
	if _, err := s.client.Enroll(t.Context(), EnrollOptions{SID: testSID, Token: tok, OutDir: dir, RootFingerprint: fp[:], KeyAlgorithm: "ecdsa-p256"}); err != nil {
		t.Fatal(err)
	}
}

// tokenRecordOf returns the stored record of a token.
func tokenRecordOf(t *testing.T, tc *testCA, token string) tokenRecord {
	t.Helper()
	key, err := TokenKey(token)
	if err != nil {
		t.Fatal(err)
	}
	var rec tokenRecord
	err = tc.db.View(func(tx *sql.Tx) error {
		var err error
		rec, _, err = getToken(tx, key.Public().(ed25519.PublicKey))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// cutProxy forwards a client's connection to the CA and drops everything
// the CA answers, then closes: the client never learns that the CA
// committed its certificate.
func cutProxy(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				wg.Go(func() { io.Copy(up, c) })
				// Read the CA's first frame (the answer, after its commit),
				// then cut the client off.
				wc := wire.NewConn(up, wire.Options{})
				wc.SetDeadline(time.Now().Add(10 * time.Second))
				wc.ReadFrame()
			})
		}
	})
	return ln.Addr().String()
}

// TestLostAnswerRetried drops the connection after the CA's commit of an
// enrollment with a token and of a renewal; the client asks again, with the
// same key and token, and gets the same certificate; nothing is spent twice.
func TestLostAnswerRetried(t *testing.T) {
	s := newServerCA(t, nil)
	s.Authority.o.Policy = PolicyToken
	cut := Client{Addr: cutProxy(t, s.client.Addr)}
	dir := filepath.Join(t.TempDir(), testSID)
	tok := s.token(t, testSID)
	o := IdentityOptions{Dir: dir, Name: testSID, Root: s.Root(), Client: cut, KeyAlgorithm: "ecdsa-p256",
		Token: func() (string, error) { return tok, nil }}
	if _, err := ReuseOrEnroll(t.Context(), o); err == nil {
		t.Fatal("the enrollment through the cutting proxy succeeded")
	}
	if rec := tokenRecordOf(t, s.testCA, tok); rec.UsedAt.IsZero() {
		t.Fatal("the CA did not commit before the answer was lost")
	}
	o.Client = s.client
	first, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatalf("asking again with the same token and key: %v", err)
	}
	if certs, _ := s.Certificates(); len(certs) != 1 {
		t.Errorf("%d certificates issued for one token; want 1", len(certs))
	}

	// The renewal's answer is lost too; next-key.pem is kept, and the next
	// start completes the renewal with it.
	o.Client, o.Now = cut, func() time.Time { return time.Now().Add(s.opts.CertValidity * 3 / 4) }
	var failed []error
	o.OnRenewFailed = func(err error) { failed = append(failed, err) }
	id, err := ReuseOrEnroll(t.Context(), o)
	if err != nil || !id.Reused || len(failed) != 1 {
		t.Fatalf("renewal through the cutting proxy: %v, %v, failures %v; want the old certificate reused", id, err, failed)
	}
	next, err := keys.ReadPrivateKey(filepath.Join(dir, NextKeyFile), nil)
	if err != nil {
		t.Fatalf("next-key.pem after the lost renewal: %v", err)
	}
	o.Client = s.client
	id, err = ReuseOrEnroll(t.Context(), o)
	if err != nil || !id.Renewed || !keys.SamePublicKey(id.Certificate.PublicKey, next.Public()) {
		t.Fatalf("completing the renewal: %v, %v", id, err)
	}
	old, _, _ := s.Certificate(first.Certificate.SerialNumber)
	if old.SupersededBy == nil || old.SupersededBy.Cmp(id.Certificate.SerialNumber) != 0 {
		t.Errorf("the old certificate is superseded by %v, want %s", old.SupersededBy, keys.SerialHex(id.Certificate.SerialNumber))
	}
	if certs, _ := s.Certificates(); len(certs) != 2 {
		t.Errorf("%d certificates; want 2 (one renewal, answered twice)", len(certs))
	}
}

// TestRenewalCompletedFromDisk: a start that finds next-key.pem and a
// cert.pem for it — the crash came between writing cert.pem and the rename —
// renames the key and asks the CA nothing.
func TestRenewalCompletedFromDisk(t *testing.T) {
	s := newServerCA(t, nil)
	dir := filepath.Join(t.TempDir(), testSID)
	var calls identityCalls
	o := s.options(t, dir, &calls)
	first, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	iss, next, err := s.renew(t, first.Certificate, first.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.WritePrivateKey(filepath.Join(dir, NextKeyFile), next, nil); err != nil {
		t.Fatal(err)
	}
	saveCertificate(t, dir, iss.Certificate)
	id, err := ReuseOrEnroll(t.Context(), o)
	if err != nil || !id.Reused || !id.Certificate.Equal(iss.Certificate) || calls.requests != 1 {
		t.Fatalf("got %v, %v after %d requests; want the renewed certificate reused without a request", id, err, calls.requests)
	}
	key, err := keys.ReadPrivateKey(filepath.Join(dir, KeyFile), nil)
	if err != nil || !keys.SamePublicKey(key.Public(), next.Public()) {
		t.Error("key.pem is not the renewal's key")
	}
	if _, err := os.Stat(filepath.Join(dir, NextKeyFile)); !os.IsNotExist(err) {
		t.Errorf("next-key.pem is left: %v", err)
	}
}

// TestAnonymousRefusalsCostNoDisk sends 10,000 requests with a bogus token
// (and garbage for a CSR) to a CA under policy "token": ca.db and its WAL do
// not change by a byte, no write transaction is even begun, and the log has
// one line a second of the injected clock.
func TestAnonymousRefusalsCostNoDisk(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
	r := tc.req(t, wire.ProfileStudent, testSID, fixtureCSR(t, "rsa8192.csr"), "pkbt_"+strings.Repeat("A", 43))
	path := filepath.Join(tc.opts.Dir, DBFile)
	read := func() []byte {
		db, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		wal, err := os.ReadFile(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return append(db, wal...)
	}
	before, commits := read(), tc.db.Commits()
	lines := tc.logs.Len()
	const n = 10000
	for i := range n {
		if i%1000 == 0 {
			tc.clock.Add(time.Second) // ten seconds in all
		}
		_, err := tc.Enroll(context.Background(), r)
		wantRefusal(t, err, wire.CodeTokenInvalid)
	}
	after := read()
	if !bytes.Equal(before, after) {
		t.Errorf("ca.db changed: %d bytes before (with its WAL), %d after %d anonymous refusals", len(before), len(after), n)
	}
	if c := tc.db.Commits() - commits; c != 0 {
		t.Errorf("%d write transactions for %d anonymous refusals, want none", c, n)
	}
	logged := tc.logs.Len() - lines
	if logged != 10 {
		t.Errorf("%d log lines for %d refusals over 10 s; want 10, one a second", logged, n)
	}
	if got := tc.AnonymousRefusals()[wire.CodeTokenInvalid]; got != n {
		t.Errorf("counted %d, want %d", got, n)
	}
	last := tc.logs.All()[tc.logs.Len()-1].ContextMap()
	if last["count"] != uint64(1000) {
		t.Errorf("the last line counts %v refusals, want 1000", last["count"])
	}
	t.Logf("%d anonymous refusals: ca.db and its WAL %d → %d bytes, %d log lines", n, len(before), len(after), logged)
}

// TestRenewerRenewsWhenDue runs a Renewer on an injected clock and timer:
// it sleeps until two thirds of the certificate's life, renews, swaps the
// identity Current returns and closes Changed; a renewal that fails is tried
// again after a pause, and the identity stays.
func TestRenewerRenewsWhenDue(t *testing.T) {
	s := newServerCA(t, nil)
	dir := filepath.Join(t.TempDir(), testBoard)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	o := IdentityOptions{Dir: dir, Name: testBoard, Profile: wire.ProfileBoard, Root: s.Root(), Client: s.client,
		KeyAlgorithm: "ecdsa-p256", Now: clock, Token: func() (string, error) { return s.boardToken(t), nil }}
	first, err := ReuseOrEnroll(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRenewer(o, first)
	waits := make(chan time.Duration)
	fire := make(chan time.Time)
	r.After = func(d time.Duration) <-chan time.Time { waits <- d; return fire }
	renewed := make(chan *Identity, 1)
	r.OnRenewed = func(id *Identity) {
		// Back to the CA's clock, on which the new certificate's life has
		// just begun.
		mu.Lock()
		now = time.Now()
		mu.Unlock()
		renewed <- id
	}
	changed := r.Changed()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()

	// Not due: it sleeps (at most an hour at a time) and renews nothing.
	if d := <-waits; d <= 0 || d > renewCheckMax {
		t.Fatalf("first sleep %v, want up to %v", d, renewCheckMax)
	}
	mu.Lock()
	now = RenewAt(first.Certificate).Add(time.Second)
	mu.Unlock()
	fire <- now
	var id *Identity
	select {
	case id = <-renewed:
	case d := <-waits:
		t.Fatalf("slept %v instead of renewing", d)
	}
	<-changed
	if !id.Renewed || r.Current() != id || keys.SamePublicKey(id.Key.Public(), first.Key.Public()) {
		t.Errorf("after the renewal: renewed %v, current swapped %v", id.Renewed, r.Current() == id)
	}
	// The new certificate is not due: the next wait is a sleep again.
	if d := <-waits; d <= 0 {
		t.Errorf("sleep after the renewal %v, want positive", d)
	}
	cancel()
	<-done
}
