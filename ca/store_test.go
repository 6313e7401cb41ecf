package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pkiboard/internal/keys"
	"pkiboard/internal/sqlstore"
	"pkiboard/wire"
)

// schemaVersion reads PRAGMA user_version of tc's store.
func schemaVersion(t *testing.T, db *sqlstore.DB) int {
	t.Helper()
	var v int
	if err := db.View(func(tx *sql.Tx) error { return tx.QueryRow(`PRAGMA user_version`).Scan(&v) }); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestStoreMigratesEmptyFile opens a CA on a new directory and on one whose
// ca.db is an empty file (a first start cut short before SQLite wrote
// anything): each gets schema version 1, its four tables, and the CRL
// number of the first CRL.
func TestStoreMigratesEmptyFile(t *testing.T) {
	for _, emptyFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("empty file %v", emptyFile), func(t *testing.T) {
			c := newClock()
			o := testOptions(t, c)
			if emptyFile {
				writeFile(t, o.Dir, DBFile, nil)
			}
			tc := open(t, o, c)
			if v := schemaVersion(t, tc.db); v != len(migrations) || v != 2 {
				t.Errorf("schema version %d, want 2", v)
			}
			var tables []string
			var number int
			err := tc.db.View(func(tx *sql.Tx) error {
				rows, err := tx.Query(`SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name`)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var name string
					if err := rows.Scan(&name); err != nil {
						return err
					}
					tables = append(tables, name)
				}
				if err := rows.Err(); err != nil {
					return err
				}
				return tx.QueryRow(`SELECT number FROM crl`).Scan(&number)
			})
			if err != nil {
				t.Fatal(err)
			}
			// sqlstore_check: sqlstore's record of its last full check.
			if want := []string{"audit", "certificates", "crl", "refusals", "sqlstore_check", "tokens"}; !slices.Equal(tables, want) {
				t.Errorf("tables %v, want %v", tables, want)
			}
			if n := tc.CRLNumber(); number != 1 || n != 1 {
				t.Errorf("stored CRL number %d, served %d; want 1 (the first CRL)", number, n)
			}
			// The first start's board token is the only row so far.
			var tokens int
			if err := tc.db.View(func(tx *sql.Tx) error { return tx.QueryRow(`SELECT count(*) FROM tokens`).Scan(&tokens) }); err != nil || tokens != 1 {
				t.Errorf("%d tokens (%v), want the first start's board token", tokens, err)
			}
			fi, err := os.Stat(filepath.Join(o.Dir, DBFile))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("ca.db: %v, %v; want mode 0600", fi.Mode(), err)
			}
		})
	}
}

// boltStore writes the CA's store as an older pkiboard left it: bbolt, with
// the CA's buckets (the committed fixture testdata/older-stores/ca.db).
func boltStore(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "older-stores", DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOlderStoreRefused: a ca.db that is not an SQLite database — the bbolt
// store of an older pkiboard, or anything else — is refused, by Open (even
// a first start's) and by OpenRecords, with a sentence that says what it is
// and what to do; the file is left as it was, and no root is made.
func TestOlderStoreRefused(t *testing.T) {
	junk := make([]byte, 8192)
	rand.Read(junk)
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
		is    error
		says  []string
	}{
		{"bbolt", boltStore, ErrOlderStore, []string{"older pkiboard", "bbolt", "start a new CA in an empty data directory"}},
		{"junk", func(t *testing.T, path string) { writeFile(t, filepath.Dir(path), filepath.Base(path), junk) },
			sqlstore.ErrNotDatabase, []string{"not an SQLite database", "older pkiboard", "start a new CA in an empty data directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			o := testOptions(t, c)
			path := filepath.Join(o.Dir, DBFile)
			tt.write(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Open(o)
			if !errors.Is(err, tt.is) || !containsAll(err.Error(), append(tt.says, path)...) {
				t.Errorf("Open: got %v, want %v saying %q", err, tt.is, tt.says)
			}
			if _, err := os.Stat(filepath.Join(o.Dir, RootCertFile)); err == nil {
				t.Error("Open made a root beside a store it refused")
			}
			// An operator command finds the same, on a directory with a root.
			writeFile(t, o.Dir, RootCertFile, []byte("a root"))
			_, err = OpenRecords(o.Dir, nil)
			if !errors.Is(err, tt.is) || !containsAll(err.Error(), tt.says...) {
				t.Errorf("OpenRecords: got %v, want %v saying %q", err, tt.is, tt.says)
			}
			if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
				t.Errorf("the refused file changed (%v)", err)
			}
		})
	}
}

// TestSecondAuthorityRefused: two CAs on one directory — the second is
// refused by the store's lock, with a sentence that names the file and asks
// whether the daemon runs, and changes nothing.
func TestSecondAuthorityRefused(t *testing.T) {
	tc := newCA(t, nil)
	tc.mustEnroll(t, testSID, "")
	o := tc.opts
	o.Create = false
	_, err := Open(o)
	if !errors.Is(err, sqlstore.ErrLocked) || !containsAll(err.Error(), filepath.Join(o.Dir, DBFile), "is the daemon running?", fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("a second Open: got %v, want the lock's refusal", err)
	}
	// The first goes on.
	tc.mustEnroll(t, "1155000002", "")
}

// TestRecordsReadWhileRunning: OpenRecords reads the store while the CA has
// it open — what Enroll committed, as the Authority lists it — without the
// root key's passphrase, and writes nothing: it fails to write if asked.
func TestRecordsReadWhileRunning(t *testing.T) {
	tc := newCA(t, func(o *Options) { o.Passphrase = []byte("correct horse") })
	first := tc.mustEnroll(t, testSID, "")
	r, err := OpenRecords(tc.opts.Dir, tc.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	second := tc.mustEnroll(t, "1155000002", "") // after OpenRecords: each call reads anew
	if _, err := tc.Revoke(context.Background(), first.Certificate.SerialNumber, ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	got, err := r.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	want, err := tc.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got) != len(want) {
		t.Fatalf("records list %d certificates, the Authority %d; want 2", len(got), len(want))
	}
	for i := range got {
		if g, w := got[i].View(), want[i].View(); g != w {
			t.Errorf("certificate %d: records %+v, authority %+v", i, g, w)
		}
	}
	serials := map[string]Status{}
	for _, c := range got {
		serials[keys.SerialHex(c.Serial)] = c.Status
	}
	if serials[keys.SerialHex(first.Certificate.SerialNumber)] != StatusRevoked || serials[keys.SerialHex(second.Certificate.SerialNumber)] != StatusValid {
		t.Errorf("statuses %v: want the first revoked and the second valid", serials)
	}
	if err := r.db.Update(func(*sql.Tx) error { return nil }); !errors.Is(err, sqlstore.ErrReadOnly) {
		t.Errorf("a write through Records: got %v, want ErrReadOnly", err)
	}
	// The CRL on disk lists the revocation: nothing is missing from it.
	crl := currentCRL(t, tc)
	if missing, err := r.CRLMissing(crl); err != nil || len(missing) != 0 {
		t.Errorf("CRLMissing of the current CRL: %v, %v; want none", missing, err)
	}
	older := *crl
	older.RevokedCertificateEntries = nil
	if missing, err := r.CRLMissing(&older); err != nil || len(missing) != 1 || missing[0].Cmp(first.Certificate.SerialNumber) != 0 {
		t.Errorf("CRLMissing of a CRL without the revocation: %v, %v; want %x", missing, err, first.Certificate.SerialNumber)
	}
}

// TestRecordsNeedACA: OpenRecords refuses a directory with no CA, as Open
// without Create does, and creates nothing.
func TestRecordsNeedACA(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenRecords(dir, nil); !errors.Is(err, ErrNoCA) {
		t.Errorf("got %v, want ErrNoCA", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("OpenRecords left %d files", len(entries))
	}
}

// TestRefusalRing: the refusals table keeps the last MaxStoredRefusals
// (10,000) refusals and deletes older ones in the transaction that adds one.
func TestRefusalRing(t *testing.T) {
	if MaxStoredRefusals != 10000 {
		t.Errorf("MaxStoredRefusals is %d; PROTOCOL.md §4.2 and README say 10,000", MaxStoredRefusals)
	}
	count := func(tc *testCA) (n int) {
		t.Helper()
		if err := tc.db.View(func(tx *sql.Tx) error { return tx.QueryRow(`SELECT count(*) FROM refusals`).Scan(&n) }); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("real bound", func(t *testing.T) {
		tc := newCA(t, nil)
		const extra = 5
		err := tc.db.Update(func(tx *sql.Tx) error {
			for i := range MaxStoredRefusals + extra {
				d := decisionRecord{Time: tc.now(), SID: testSID, Profile: wire.ProfileStudent, Code: wire.CodeBadCSR, Reason: strings.Repeat("x", i%7)}
				if err := putRefusal(tx, d, tc.refusalBound); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ds, err := tc.Refusals(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != MaxStoredRefusals || ds[0].Seq != MaxStoredRefusals+extra || ds[len(ds)-1].Seq != extra+1 || count(tc) != MaxStoredRefusals {
			t.Errorf("ring holds %d refusals, %d..%d; want %d, the newest", len(ds), ds[len(ds)-1].Seq, ds[0].Seq, MaxStoredRefusals)
		}
	})

	// Through Enroll, with a bound of 3: each proven refusal is stored, and
	// the ring never holds more than the bound after any of them.
	t.Run("through Enroll", func(t *testing.T) {
		tc := newCA(t, func(o *Options) { o.Policy = PolicyToken })
		tc.refusalBound = 3
		tok := tc.token(t, testSID)
		for i := range 5 {
			// The token proves possession; the CSR names someone else.
			r := tc.req(t, wire.ProfileStudent, testSID, makeCSR(t, newKey(t), fmt.Sprintf("someone%d", i)), tok)
			_, err := tc.Enroll(context.Background(), r)
			wantRefusal(t, err, wire.CodeCNMismatch)
			if !RefusalProven(err) {
				t.Fatal("the refusal is not a proven one")
			}
			if n := count(tc); n != min(i+1, 3) {
				t.Fatalf("after %d refusals the ring holds %d, want %d", i+1, n, min(i+1, 3))
			}
		}
		ds, err := tc.Refusals(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 3 || ds[0].Seq != 5 || ds[2].Seq != 3 || ds[0].Code != wire.CodeCNMismatch || ds[0].SID != testSID || ds[0].Peer != "192.0.2.1:4000" {
			t.Errorf("ring %+v; want refusals 5, 4, 3", ds)
		}
		if ds, err := tc.Refusals(2); err != nil || len(ds) != 2 || ds[0].Seq != 5 {
			t.Errorf("Refusals(2): %+v, %v", ds, err)
		}
	})
}

// TestSchemaConstraints: the CHECK constraints and foreign keys refuse rows
// that break the rules the code relies on, whoever writes them.
func TestSchemaConstraints(t *testing.T) {
	tc := newCA(t, nil)
	iss := tc.mustEnroll(t, testSID, "")
	serial := keys.SerialHex(iss.Certificate.SerialNumber)
	const cert = `INSERT INTO certificates (serial, sid, profile, subject, not_before, not_after, status, revoked_at, reason, auth, renews, superseded_by, spki_sha256, der, issued)
		VALUES (?, 'x', ?, 'CN=x', '2026-03-01T09:00:00Z', '2026-09-01T09:00:00Z', ?, ?, ?, ?, ?, ?, zeroblob(32), x'30', '2026-03-01T09:00:00Z')`
	tests := []struct {
		name string
		sql  string
		args []any
	}{
		{"uppercase serial", cert, []any{"ABCD", 1, "valid", nil, nil, "none", nil, nil}},
		{"serial with a leading zero byte", cert, []any{"00ab", 1, "valid", nil, nil, "none", nil, nil}},
		{"odd serial", cert, []any{"abc", 1, "valid", nil, nil, "none", nil, nil}},
		{"profile 3", cert, []any{"abcd", 3, "valid", nil, nil, "none", nil, nil}},
		{"status expired", cert, []any{"abcd", 1, "expired", nil, nil, "none", nil, nil}},
		{"revoked without a time", cert, []any{"abcd", 1, "revoked", nil, 1, "none", nil, nil}},
		{"valid with a reason", cert, []any{"abcd", 1, "valid", nil, 1, "none", nil, nil}},
		{"reason 7", cert, []any{"abcd", 1, "revoked", "2026-03-01T09:00:00Z", 7, "none", nil, nil}},
		{"auth unknown", cert, []any{"abcd", 1, "valid", nil, nil, "magic", nil, nil}},
		{"renewal renewing nothing", cert, []any{"abcd", 1, "valid", nil, nil, "renewal", nil, nil}},
		{"renewal of a missing certificate", cert, []any{"abcd", 1, "valid", nil, nil, "renewal", "ef01", nil}},
		{"superseded but valid", cert, []any{"abcd", 1, "valid", nil, nil, "none", nil, serial}},
		{"time not in RFC 3339 UTC", `UPDATE certificates SET not_after = '2026-09-01 09:00:00' WHERE serial = ?`, []any{serial}},
		{"time with an offset", `UPDATE certificates SET not_after = '2026-09-01T09:00:00+08:00' WHERE serial = ?`, []any{serial}},
		{"text for a DER", `UPDATE certificates SET der = 'MIIB' WHERE serial = ?`, []any{serial}},
		{"short key hash", `UPDATE certificates SET spki_sha256 = zeroblob(31) WHERE serial = ?`, []any{serial}},
		{"token key of 31 bytes", `INSERT INTO tokens (public_key, sid, profile, created, expires) VALUES (zeroblob(31), 'x', 1, '2026-03-01T09:00:00Z', '2026-03-04T09:00:00Z')`, nil},
		{"token expiring before it was made", `INSERT INTO tokens (public_key, sid, profile, created, expires) VALUES (zeroblob(32), 'x', 1, '2026-03-01T09:00:00Z', '2026-02-01T09:00:00Z')`, nil},
		{"token used without a certificate", `INSERT INTO tokens (public_key, sid, profile, created, expires, used_at) VALUES (zeroblob(32), 'x', 1, '2026-03-01T09:00:00Z', '2026-03-04T09:00:00Z', '2026-03-02T09:00:00Z')`, nil},
		{"token spent on a missing certificate", `INSERT INTO tokens (public_key, sid, profile, created, expires, used_at, serial) VALUES (zeroblob(32), 'x', 1, '2026-03-01T09:00:00Z', '2026-03-04T09:00:00Z', '2026-03-02T09:00:00Z', 'ef01')`, nil},
		{"refusal with code 0", `INSERT INTO refusals (time, sid, profile, code, reason) VALUES ('2026-03-01T09:00:00Z', 'x', 1, 0, 'r')`, nil},
		{"a second CRL number", `INSERT INTO crl (id, number) VALUES (2, 5)`, nil},
		{"a negative CRL number", `UPDATE crl SET number = -1`, nil},
	}
	for _, tt := range tests {
		err := tc.db.Update(func(tx *sql.Tx) error {
			_, err := tx.Exec(tt.sql, tt.args...)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "constraint failed") {
			t.Errorf("%s: got %v, want a constraint failure", tt.name, err)
		}
	}
	// The row the tests started from is a valid one: the same insert with a
	// fresh serial and good values passes.
	err := tc.db.Update(func(tx *sql.Tx) error {
		_, err := tx.Exec(cert, "abcd", 1, "revoked", "2026-03-01T09:00:00Z", 1, "renewal", serial, nil)
		return err
	})
	if err != nil {
		t.Errorf("a good row: %v", err)
	}
}

// sqlite3Bin returns the path of the sqlite3 shell. Without one the test is
// skipped, unless PKIBOARD_REQUIRE_SQLITE3=1, in which case it fails.
func sqlite3Bin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		msg := fmt.Sprintf("sqlite3 not found on PATH (make deps installs it): %v", err)
		if os.Getenv("PKIBOARD_REQUIRE_SQLITE3") == "1" {
			t.Fatalf("%s (PKIBOARD_REQUIRE_SQLITE3=1, so this is a failure)", msg)
		}
		t.Skipf("%s; set PKIBOARD_REQUIRE_SQLITE3=1 to make this a failure", msg)
	}
	return bin
}

// TestSQLite3ReadsLiveStore runs the real sqlite3 shell, -readonly, on ca.db
// while the Authority has it open: it reads the certificates Enroll just
// committed, and the README's queries run.
func TestSQLite3ReadsLiveStore(t *testing.T) {
	bin := sqlite3Bin(t)
	tc := newCA(t, nil)
	for range 2 {
		tc.mustEnroll(t, testSID, "")
	}
	tc.mustEnroll(t, "1155000002", "")
	path := filepath.Join(tc.opts.Dir, DBFile)
	run := func(query string) string {
		t.Helper()
		out, err := exec.Command(bin, "-readonly", path, query).CombinedOutput()
		if err != nil {
			t.Fatalf("sqlite3 %q: %v: %s", query, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got, want := run(`select sid, count(*) from certificates group by sid`), "1155000001|2\n1155000002|1"; got != want {
		t.Errorf("sqlite3: got %q want %q", got, want)
	}
	// One more, read at once.
	tc.mustEnroll(t, "1155000003", "")
	if got := run(`select count(*) from certificates`); got != "4" {
		t.Errorf("sqlite3 after another enrollment: got %q certificates, want 4", got)
	}
	// The README's queries run (they compare with the shell's 'now', not
	// the test's clock, so only that they run is checked here).
	for _, q := range readmeQueries {
		run(q)
	}
	if got := run(`select serial, status, auth from certificates where sid = '1155000002' order by issued`); !strings.HasSuffix(got, "|valid|none") {
		t.Errorf("a student's history: got %q", got)
	}
	if got := run(`PRAGMA user_version`); got != "2" {
		t.Errorf("user_version %q, want 2", got)
	}
}

// readmeQueries are the queries README's "The store" shows for ca.db.
var readmeQueries = []string{
	`select profile, count(*) from certificates where status = 'valid' and not_after > strftime('%Y-%m-%dT%H:%M:%SZ', 'now') group by profile`,
	`select serial, status, not_after, auth, renews from certificates where sid = '1155000001' order by issued`,
	`select sid, expires from tokens where used_at is null and cancelled is null and expires between strftime('%Y-%m-%dT%H:%M:%SZ', 'now') and strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+7 days') order by expires`,
	`select time, sid, peer, code, reason from refusals order by seq desc limit 20`,
}
