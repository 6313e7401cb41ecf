package main

import (
	"crypto/ecdsa"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"pkiboard/internal/keys"
)

// caStored is how many certificates the CA's store holds before the second
// half of the CA curve.
const caStored = 1000000

// curveCA measures CA issuance with one-time tokens (16 clients, each
// enrollment a student of its own with one token, made before the window;
// see tokenClients) and the CA's start time with an empty store and with 1,000,000
// certificates in it. The million are synthetic rows of ca.db's certificates
// table, inserted through its own schema (every CHECK applies) in
// transactions of 50,000 while the CA is stopped: each with its own random
// serial, SID, SPKI hash and times, and the same DER (the CA's root
// certificate: the CA does not parse stored certificates at start, and
// signing a million would take minutes).
func (r *runner) curveCA() []row {
	sections := map[string]string{"ca": curveLimits + "\npolicy = \"token\"", "board": curveLimits}
	empty, full := newInstallWith(sections), newInstallWith(sections)
	defer empty.remove()
	defer full.remove()
	// The first start makes each CA's root and ca.db.
	empty.start(r.bin, "ca").stop()
	full.start(r.bin, "ca").stop()
	root, err := keys.ReadCertificate(full.path("data/ca/root.pem"))
	if err != nil {
		fatalf("%v", err)
	}
	start := time.Now()
	populateCA(full.path("data/ca/ca.db"), root.Raw, caStored)
	populate := time.Since(start)
	logf("curve: %d certificates inserted into ca.db in %.1fs (%d MiB)", caStored, populate.Seconds(), fileSize(full.path("data/ca/ca.db"))>>20)

	type side struct {
		in     *install
		d      *daemon
		start  float64
		fp     [32]byte
		supply *tokenClients
		rate   []float64
		cpu    []float64
		most   int
	}
	sides := []*side{{in: empty}, {in: full}}
	curveKeys := make([]*ecdsa.PrivateKey, caClients)
	for i := range curveKeys {
		curveKeys[i] = newP256()
	}
	for _, s := range sides {
		// Its start time: the median of three starts (from exec to
		// listening), stopped in between.
		var starts []float64
		for k := range 3 {
			t := time.Now()
			s.d = s.in.start(r.bin, "ca")
			starts = append(starts, float64(time.Since(t).Microseconds())/1000)
			if k < 2 {
				s.d.stop()
			}
		}
		s.start = median(starts)
		r.raw("curve CA start ms, %s: %v", s.in.dir, starts)
		defer s.d.stop()
		rc, err := keys.ReadCertificate(s.in.path("data/ca/root.pem"))
		if err != nil {
			fatalf("%v", err)
		}
		s.fp = keys.Fingerprint(rc)
		s.supply = newTokenClients(curveKeys, pkiboardTokens(s.in.path("data/ca/admin.sock")))
	}
	logf("curve: CA start %.0f ms empty, %.0f ms with %d certificates", sides[0].start, sides[1].start, caStored)
	for run := range r.count {
		for _, s := range sides {
			guess := 2000.0 // certs/s, until measured
			if len(s.rate) > 0 {
				guess = s.rate[len(s.rate)-1]
			}
			s.supply.fill(tokenNeed(guess, caClients, s.most))
			m := meterCPU(s.d.cmd.Process.Pid)
			rate, most := tokenEnrollLoad(s.d.addr, s.fp, s.supply)
			c, _ := m.perOp(rate)
			s.rate, s.cpu, s.most = append(s.rate, rate), append(s.cpu, c), max(s.most, most)
		}
		logf("curve CA run %d: %.0f certs/s empty (CA %.0f µs each), %.0f certs/s with %d stored (CA %.0f µs each)",
			run+1, sides[0].rate[run], sides[0].cpu[run], sides[1].rate[run], caStored, sides[1].cpu[run])
	}
	r.raw("curve CA: %d certificates populated in %.1fs, ca.db %d MiB; start ms empty %.0f, full %.0f",
		caStored, populate.Seconds(), fileSize(full.path("data/ca/ca.db"))>>20, sides[0].start, sides[1].start)
	r.raw("curve CA with tokens, certs/s: empty %v, %d stored %v; CA CPU µs: empty %v, stored %v", sides[0].rate, caStored, sides[1].rate, sides[0].cpu, sides[1].cpu)
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "cost curve, CA issuance with one-time tokens, %d clients (medians of %d runs, alternating):\n", caClients, r.count)
	fmt.Fprintf(&tbl, "| certificates stored | certs/s | CA CPU µs/cert | CA start ms |\n|---|---|---|---|\n")
	for i, s := range sides {
		fmt.Fprintf(&tbl, "| %d | %s | %s | %s |\n", []int{0, caStored}[i], num(median(s.rate)), num(median(s.cpu)), num(s.start))
	}
	r.raw("%s", tbl.String())
	logf("%s", tbl.String())
	return []row{{
		name:     fmt.Sprintf("curve: CA issuance with tokens, %d certificates stored", caStored),
		baseline: fmt.Sprintf("the same CA build, empty store (start %.0f ms; with them %.0f ms)", sides[0].start, sides[1].start),
		unit:     "certs/s", ours: sides[1].rate, base: sides[0].rate,
	}}
}

// populateCA inserts n synthetic certificates into the certificates table
// of the CA database at path.
func populateCA(path string, der []byte, n int) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		fatalf("curve: %v", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("PRAGMA synchronous = OFF"); err != nil {
		fatalf("curve: %v", err)
	}
	const layout = "2006-01-02T15:04:05Z"
	now := time.Now().UTC()
	notBefore, notAfter := now.Add(-time.Hour).Format(layout), now.Add(180*24*time.Hour).Format(layout)
	// Random serials, inserted in order: the primary key's B-tree then grows
	// at its end, as fast as SQLite inserts.
	serials := make([]string, n)
	rnd := make([]byte, 48)
	for i := range serials {
		rand.Read(rnd[:16])
		rnd[0] = rnd[0]&0x7f | 0x40 // positive, no leading zero byte
		serials[i] = hex.EncodeToString(rnd[:16])
	}
	slices.Sort(serials)
	var tx *sql.Tx
	var ins *sql.Stmt
	for i := range n {
		if i%50000 == 0 {
			if tx != nil {
				if err := tx.Commit(); err != nil {
					fatalf("curve: populate ca.db: %v", err)
				}
			}
			if tx, err = db.Begin(); err != nil {
				fatalf("curve: %v", err)
			}
			if ins, err = tx.Prepare(`INSERT INTO certificates
				(serial, sid, profile, subject, not_before, not_after, status, auth, peer, renews, spki_sha256, der, issued)
				VALUES (?, ?, 1, ?, ?, ?, 'valid', 'token', NULL, NULL, ?, ?, ?)`); err != nil {
				fatalf("curve: %v", err)
			}
		}
		rand.Read(rnd)
		sid := fmt.Sprintf("p%07d", i)
		if _, err := ins.Exec(serials[i], sid, "CN="+sid, notBefore, notAfter, rnd[16:48], der, notBefore); err != nil {
			fatalf("curve: populate ca.db: %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		fatalf("curve: populate ca.db: %v", err)
	}
	// Into the database file, as a daemon's own checkpoints leave it.
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		fatalf("curve: populate ca.db: %v", err)
	}
}

// fileSize is the size of the file at path, or -1.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}
