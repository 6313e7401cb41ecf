package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the driver "sqlite", for checkCAStore

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/session"
	"pkiboard/wire"
)

// chaosIterations is how many times the chaos test kills each daemon:
// CHAOS_N, or 3 (the size make test runs; make chaos runs more).
func chaosIterations(t *testing.T) int {
	v := os.Getenv("CHAOS_N")
	if v == "" {
		return 3
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("CHAOS_N=%q is not a positive number", v)
	}
	return n
}

// chaosLedger is what the clients of the chaos test were told: every
// certificate and every receipt they received, and every content they began
// to send.
type chaosLedger struct {
	mu       sync.Mutex
	certs    map[string]string       // serial (hex) → SID
	bySID    map[string][]string     // SID → the serials its client received, in order
	receipts map[string]chaosReceipt // receipt id → what it acknowledged
	sent     map[[32]byte]int64      // SHA-256 → size of each content sent
	verified map[string]bool         // submission ids whose evidence was checked
	renewals int                     // renewals received
}

// received records a certificate a client received (once per serial: an
// answer received again after a lost one is the same certificate).
func (l *chaosLedger) received(sid string, cert *x509.Certificate) {
	l.mu.Lock()
	defer l.mu.Unlock()
	serial := keys.SerialHex(cert.SerialNumber)
	if _, ok := l.certs[serial]; ok {
		return
	}
	l.certs[serial] = sid
	l.bySID[sid] = append(l.bySID[sid], serial)
}

type chaosReceipt struct {
	sid  string
	sum  [32]byte
	size int64
}

// chaosOp is one client operation: an enrollment with a one-time token, a
// renewal, or a submission.
type chaosOp struct {
	enroll  bool
	renew   bool
	sid     string
	token   string   // the enrollment's token
	id      identity // the submitting student
	name    string
	content []byte
}

func (op chaosOp) String() string {
	switch {
	case op.enroll:
		return "enroll " + op.sid
	case op.renew:
		return "renew " + op.sid
	}
	return fmt.Sprintf("submit %s (%s, %d bytes)", op.sid, op.name, len(op.content))
}

// mintToken asks the running CA, through its operator socket, for a token
// for sid.
func (s *system) mintToken(sid string) (string, error) {
	var v struct{ Token string }
	err := adminCall(s.path("data", "ca"), "token", map[string]string{"sid": sid}, &v)
	return v.Token, err
}

// identity settles sid's identity in its directory as a student does
// (ca.ReuseOrEnroll): enrolling with token, or renewing when renew is set (the
// client's clock is moved to 70% of the certificate's life). A renewal that
// fails (the CA was killed) is an error here, although the student would go
// on with the certificate it holds.
func (s *system) identity(ctx context.Context, sid, token string, renew bool) (*ca.Identity, error) {
	root, err := keys.ReadCertificate(s.path("data", "ca", "root.pem"))
	if err != nil {
		return nil, err
	}
	var failed error
	o := ca.IdentityOptions{
		Dir: s.path("chaos", sid), Name: sid, Root: root, Client: ca.Client{Addr: s.ca.Addr}, KeyAlgorithm: "ecdsa-p256",
		Token:         func() (string, error) { return token, nil },
		OnRenewFailed: func(err error) { failed = err },
	}
	if renew {
		o.Now = func() time.Time { return time.Now().Add(180 * 24 * time.Hour * 7 / 10) } // cert_validity's default
	}
	id, err := ca.ReuseOrEnroll(ctx, o)
	if err == nil && failed != nil {
		err = fmt.Errorf("renewal: %w", failed)
	}
	return id, err
}

// do runs op against the system and records what the client received.
func (s *system) do(ctx context.Context, op chaosOp, l *chaosLedger) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if op.enroll || op.renew {
		id, err := s.identity(ctx, op.sid, op.token, op.renew)
		if err != nil {
			return err
		}
		if op.renew && !id.Renewed && !id.Reused {
			return fmt.Errorf("renew %s: enrolled anew instead", op.sid)
		}
		l.received(op.sid, id.Certificate)
		if op.renew {
			l.mu.Lock()
			l.renewals++
			l.mu.Unlock()
		}
		return nil
	}
	sum := sha256.Sum256(op.content)
	l.mu.Lock()
	l.sent[sum] = int64(len(op.content))
	l.mu.Unlock()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.board.Addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord, ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second})
	sc, err := session.Client(wc, &session.ClientConfig{SID: op.sid, Certificate: op.id.cert, Key: op.id.key, Root: op.id.root, BoardName: "blackboard"})
	if err != nil {
		return err
	}
	defer sc.Close()
	r, _, err := sc.Submit(session.NewSubmitRequest("lab", op.name, int64(len(op.content)), sum), bytes.NewReader(op.content), session.SubmitOptions{})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.receipts[r.ID] = chaosReceipt{sid: op.sid, sum: sum, size: int64(len(op.content))}
	l.mu.Unlock()
	return nil
}

// check compares the stores of the running daemons with the ledger: every
// certificate and receipt a client received is stored; serials and
// submission ids are unique; every listed submission is a whole content a
// client sent, whose stored bytes and evidence verify. It returns how many
// certificates and submissions are stored.
func (s *system) check(t *testing.T, l *chaosLedger, when string) (certs, subs int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var views []ca.CertView
	if err := json.Unmarshal([]byte(s.mustRun(nil, "certs", "--json").stdout), &views); err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{}
	for _, v := range views {
		if _, dup := stored[v.Serial]; dup {
			t.Errorf("%s: serial %s stored twice", when, v.Serial)
		}
		stored[v.Serial] = v.SID
	}
	for serial, sid := range l.certs {
		if stored[serial] != sid {
			t.Errorf("%s: certificate %s that %s received is not in the CA's store", when, serial, sid)
		}
	}
	listed := map[string]submissionJSON{}
	for _, sub := range s.submissions() {
		if _, dup := listed[sub.ID]; dup {
			t.Errorf("%s: submission id %s listed twice", when, sub.ID)
		}
		listed[sub.ID] = sub
		raw, _ := hex.DecodeString(sub.SHA256)
		var sum [32]byte
		copy(sum[:], raw)
		if size, ok := l.sent[sum]; !ok || size != sub.Size {
			t.Errorf("%s: submission %s (%s, %d bytes) is not a content any client sent whole", when, sub.ID, sub.SID, sub.Size)
			continue
		}
		if l.verified[sub.ID] {
			continue
		}
		if err := s.verifyStored(sub.ID); err != nil {
			t.Errorf("%s: %v", when, err)
		}
		l.verified[sub.ID] = true
	}
	for id, r := range l.receipts {
		sub, ok := listed[id]
		if !ok || sub.SID != r.sid || sub.SHA256 != hex.EncodeToString(r.sum[:]) || sub.Size != r.size {
			t.Errorf("%s: receipt %s that %s received is not listed as such (listed: %+v)", when, id, r.sid, sub)
		}
	}
	return len(stored), len(listed)
}

// checkSIDs checks, once every cut-off operation was retried, that every
// certificate the CA stored for a client's SID was received by that client:
// an answer lost in a crash was asked for again with the same token and key,
// and answered with the same certificate; no token was spent twice, and a SID
// has a second certificate only by a renewal, which revoked the one before as
// superseded.
func (s *system) checkSIDs(t *testing.T, l *chaosLedger, when string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var views []ca.CertView
	if err := json.Unmarshal([]byte(s.mustRun(nil, "certs", "--json").stdout), &views); err != nil {
		t.Fatal(err)
	}
	storedBySID := map[string][]ca.CertView{}
	for _, v := range views {
		storedBySID[v.SID] = append(storedBySID[v.SID], v)
	}
	for sid, serials := range l.bySID {
		got := storedBySID[sid]
		if len(got) != len(serials) {
			t.Errorf("%s: the CA stored %d certificates for %s, its client received %d (%v)", when, len(got), sid, len(serials), serials)
			continue
		}
		last := serials[len(serials)-1]
		for _, v := range got {
			switch {
			case v.Serial == last && v.Status != "valid":
				t.Errorf("%s: %s's current certificate %s is %s", when, sid, v.Serial, v.Status)
			case v.Serial != last && (v.Status != "revoked" || v.Reason != "superseded"):
				t.Errorf("%s: %s's renewed certificate %s is %s (%s), want revoked as superseded", when, sid, v.Serial, v.Status, v.Reason)
			}
		}
	}
}

// TestChaosKillUnderLoad runs, CHAOS_N times per daemon, a load of concurrent
// enrollments (each with its own one-time token, under policy "token"),
// renewals and submissions (messages, and 2 MiB reports), kills the CA or the
// board with SIGKILL at a random moment — among others between the CA's
// commit and the client's save — restarts it, and checks that no
// acknowledged certificate or submission was lost, nothing partial is listed,
// ids are unique, every operation the crash broke succeeds when retried
// (an enrollment with the same token and key, a renewal with the key saved
// for it), and no SID holds a certificate its client did not receive.
func TestChaosKillUnderLoad(t *testing.T) {
	n := chaosIterations(t)
	const workers = 12
	in := newInstall(t, map[string]string{"ca": `policy = "token"`})
	s := &system{install: in}
	s.ca = in.start("ca", "--log-level", "info")
	s.board = in.start("board", "--ca-addr", s.ca.Addr, "--log-level", "info")
	caAddr, boardAddr := s.ca.Addr, s.board.Addr

	l := &chaosLedger{certs: map[string]string{}, bySID: map[string][]string{}, receipts: map[string]chaosReceipt{}, sent: map[[32]byte]int64{}, verified: map[string]bool{}}
	setup := func(sid string) *ca.Identity {
		tok, err := s.mintToken(sid)
		if err != nil {
			t.Fatal(err)
		}
		id, err := s.identity(context.Background(), sid, tok, false)
		if err != nil {
			t.Fatal(err)
		}
		l.received(sid, id.Certificate)
		return id
	}
	var students []identity
	for i := range 8 {
		id := setup(fmt.Sprintf("chaos-student-%d", i))
		students = append(students, identity{key: id.Key, cert: id.Certificate, root: id.Root})
	}
	for w := range workers {
		if w%3 == 1 {
			setup(fmt.Sprintf("chaos-renew-%d", w))
		}
	}
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	report := make([]byte, 2<<20)
	mrand.NewChaCha8([32]byte{9}).Read(report)

	var cutVictim, cutOther, orphans, again int
	for it := range 2 * n {
		victim := []string{"ca", "board"}[it%2]
		ctx, cancel := context.WithCancel(context.Background())
		var (
			wg       sync.WaitGroup
			fmu      sync.Mutex
			failed   []chaosOp
			progress [2]atomic.Int64 // completed enrollments, submissions
		)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Workers 0, 3, 6, 9 enroll, 1, 4, 7, 10 renew, the others
				// submit.
				enroll, renew := w%3 == 0, w%3 == 1
				for k := 0; ctx.Err() == nil; k++ {
					op := chaosOp{enroll: enroll, renew: renew, sid: fmt.Sprintf("chaos-%d-%d-%d", it, w, k)}
					switch {
					case enroll:
						tok, err := s.mintToken(op.sid)
						if err != nil {
							return // the CA is down: nothing was sent
						}
						op.token = tok
					case renew:
						op.sid = fmt.Sprintf("chaos-renew-%d", w)
					default:
						st := students[(w*7+k)%len(students)]
						op.id, op.sid = st, st.cert.Subject.CommonName
						op.name, op.content = "message.txt", []byte(fmt.Sprintf("iteration %d, worker %d, op %d: %s\n", it, w, k, bytes.Repeat([]byte{'x'}, k%512)))
						if k%3 == 2 { // a report, unique by its first bytes
							op.name = "report.bin"
							op.content = append([]byte(fmt.Sprintf("report %d-%d-%d|", it, w, k)), report...)
						}
					}
					if err := s.do(ctx, op, l); err != nil {
						fmu.Lock()
						failed = append(failed, op)
						fmu.Unlock()
						return // the daemon is down (or we are stopping): retry after the restart
					}
					progress[map[bool]int{true: 0, false: 1}[enroll || renew]].Add(1)
				}
			}()
		}
		// Kill at a random moment once the victim is busy: after 1 to 4 of
		// its operations have completed, and a random few milliseconds.
		vi := map[string]int{"ca": 0, "board": 1}[victim]
		want := int64(1 + rng.IntN(4))
		deadline := time.Now().Add(30 * time.Second)
		for progress[vi].Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("iteration %d: the %s completed %d operations in 30s", it, victim, progress[vi].Load())
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		d := map[string]*daemon{"ca": s.ca, "board": s.board}[victim]
		d.Kill()
		cancel()
		waited := make(chan struct{})
		go func() { wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(60 * time.Second):
			t.Fatalf("iteration %d: clients still running 60s after the %s was killed", it, victim)
		}

		// Restart it on the same address: its store must open.
		if victim == "ca" {
			s.ca = in.start("ca", "--log-level", "info", "--listen", caAddr)
		} else {
			s.board = in.start("board", "--log-level", "info", "--listen", boardAddr, "--ca-addr", caAddr)
			orphans += s.board.Logged("removed content files a crash left unindexed")
		}
		certs, subs := s.check(t, l, fmt.Sprintf("iteration %d (%s killed)", it, victim))

		// Every operation the kill (or the stop of the load) broke succeeds now.
		victimCut := 0
		for _, op := range failed {
			if (op.enroll || op.renew) == (victim == "ca") {
				victimCut++
			}
		}
		cutVictim += victimCut
		cutOther += len(failed) - victimCut
		errs := forEach(len(failed), 8, func(i int) error {
			op := failed[i]
			// The key the cut-off attempt saved before it sent anything.
			saved, _ := keys.ReadPrivateKey(s.path("chaos", op.sid, ca.KeyFile), nil)
			if err := s.do(context.Background(), op, l); err != nil {
				return err
			}
			if op.enroll && saved != nil {
				cert, err := keys.ReadCertificate(s.path("chaos", op.sid, ca.CertFile))
				if err != nil || !keys.SamePublicKey(cert.PublicKey, saved.Public()) {
					return fmt.Errorf("%s: the retry did not certify the key saved before the cut-off attempt (%v)", op, err)
				}
			}
			return nil
		})
		for _, err := range errs {
			t.Errorf("iteration %d: retry after the restart: %v", it, err)
		}
		s.checkSIDs(t, l, fmt.Sprintf("iteration %d, after the retries", it))
		if victim == "ca" {
			// The restarted CA has served only the retries so far: those it
			// answered with a certificate committed before the kill.
			again += s.ca.Logged("certificate sent again")
		}
		t.Logf("iteration %d: %s killed after %d enrollments and %d submissions; %d of its operations cut off (and %d of the other daemon's stopped), all retried; %d certificates and %d submissions stored",
			it, victim, progress[0].Load(), progress[1].Load(), victimCut, len(failed)-victimCut, certs, subs)
		if t.Failed() {
			t.FailNow()
		}
	}
	certs, subs := s.check(t, l, "at the end")

	// The stores open cleanly offline too, and say the same.
	for _, d := range []*daemon{s.board, s.ca} {
		if code := d.stop(); code != 0 {
			t.Errorf("%s exit after SIGTERM: %d", d.Name, code)
		}
	}
	st, err := board.Open(in.path("data", "board"))
	if err != nil {
		t.Fatalf("the board's store after %d kills: %v", n, err)
	}
	recs, err := st.List()
	st.Close()
	if err != nil || len(recs) != subs {
		t.Errorf("board store offline: %d submissions, %v; %d listed online", len(recs), err, subs)
	}
	var views []ca.CertView
	if err := json.Unmarshal([]byte(s.mustRun(nil, "certs", "--json").stdout), &views); err != nil || len(views) != certs {
		t.Errorf("CA store offline: %d certificates, %v; %d online", len(views), err, certs)
	}
	if err := checkBoardDB(in.path("data", "board", "board.db"), subs); err != nil {
		t.Errorf("board.db after %d kills: %v", n, err)
	}
	if err := checkCAStore(in.path("data", "ca", "ca.db"), views); err != nil {
		t.Errorf("ca.db after %d kills: %v", n, err)
	}
	partials, _ := filepath.Glob(in.path("data", "board", "partial", "*", "*.part"))
	t.Logf("survived %d kills of each daemon (%d in all): %d operations cut off by a kill and %d stopped with the load, every one retried successfully (%d of them after the CA had committed their certificate, answered again); "+
		"%d certificates (%d by renewal) and %d receipts received by clients, every one stored, no SID with a certificate its client did not receive; %d submissions listed, each whole and verified; "+
		"%d partial uploads held, none listed; %d restarts removed orphaned content files; board.db and ca.db pass SQLite's integrity and foreign key checks; data lost: none",
		n, 2*n, cutVictim, cutOther, again, len(l.certs), l.renewals, len(l.receipts), subs, len(partials), orphans)
}

// checkCAStore opens the CA's store (SQLite) read-only and checks it:
// SQLite's integrity check and foreign key check find nothing, and its
// certificate rows are those `pkiboard certs` listed (listed), each with a
// DER that parses to a certificate of its serial and SID.
func checkCAStore(path string, listed []ca.CertView) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var integrity string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&integrity); err != nil || integrity != "ok" {
		return fmt.Errorf("integrity check: %q, %v", integrity, err)
	}
	rows, err := db.Query(`PRAGMA foreign_key_check`)
	if err != nil {
		return err
	}
	dangling := rows.Next()
	rows.Close()
	if dangling {
		return errors.New("a row refers to a missing certificate")
	}
	want := make(map[string]string, len(listed))
	for _, v := range listed {
		want[v.Serial] = v.SID
	}
	rows, err = db.Query(`SELECT serial, sid, der FROM certificates`)
	if err != nil {
		return err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var serial, sid string
		var der []byte
		if err := rows.Scan(&serial, &sid, &der); err != nil {
			return err
		}
		n++
		cert, err := x509.ParseCertificate(der)
		switch {
		case err != nil:
			return fmt.Errorf("certificate %s: %v", serial, err)
		case keys.SerialHex(cert.SerialNumber) != serial || cert.Subject.CommonName != sid:
			return fmt.Errorf("the row of certificate %s (SID %s) holds certificate %s for %s", serial, sid, keys.SerialHex(cert.SerialNumber), cert.Subject.CommonName)
		case want[serial] != sid:
			return fmt.Errorf("certificate %s (SID %s) is not one `pkiboard certs` listed", serial, sid)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != len(listed) {
		return fmt.Errorf("%d certificate rows, %d listed", n, len(listed))
	}
	return nil
}

// verifyStored checks the evidence of submission id in the board's store,
// read-only while the board runs, as pkiboard submissions --verify does: the
// content, the student's signature and the stored receipt.
func (s *system) verifyStored(id string) error {
	root, err := keys.ReadCertificate(s.path("data", "ca", "root.pem"))
	if err != nil {
		return err
	}
	st, err := board.OpenReadOnly(s.path("data", "board"))
	if err != nil {
		return err
	}
	defer st.Close()
	rec, err := st.Get(id)
	if err != nil {
		return fmt.Errorf("verify %s: %w", id, err)
	}
	if ev := st.Verify(rec, root, nil); !ev.ContentOK || !ev.ReceiptOK || ev.Problem != "" {
		return fmt.Errorf("submission %s does not verify: %s", id, ev.Problem)
	}
	return nil
}

// checkBoardDB opens the board's database with SQLite, read-only, and checks
// it: PRAGMA integrity_check (every page, and every index against its table)
// finds nothing, it holds want rows with distinct ids and files, and each
// row's content file is there, of the row's size.
func checkBoardDB(path string, want int) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var problems []string
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		return err
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return err
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	rows.Close()
	if len(problems) > 0 {
		return fmt.Errorf("integrity_check: %s", strings.Join(problems, "; "))
	}
	var n, ids, files int
	if err := db.QueryRow("SELECT count(*), count(DISTINCT id), count(DISTINCT file) FROM submissions").Scan(&n, &ids, &files); err != nil {
		return err
	}
	if n != want || ids != n || files != n {
		return fmt.Errorf("%d rows (%d ids, %d files), want %d listed", n, ids, files, want)
	}
	rows, err = db.Query("SELECT id, file, size FROM submissions")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, file string
		var size int64
		if err := rows.Scan(&id, &file, &size); err != nil {
			return err
		}
		fi, err := os.Stat(filepath.Join(filepath.Dir(path), board.ContentDir, file))
		if err != nil || fi.Size() != size {
			return fmt.Errorf("submission %s: its content file %s: %v", id, file, err)
		}
	}
	return rows.Err()
}
