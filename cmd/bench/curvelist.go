package main

import (
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"pkiboard/session"

	_ "modernc.org/sqlite" // the driver of the stores' SQLite files, to populate them in bulk
)

// listingStudents × listingVersions synthetic submissions are added to the
// one real submission of the listing rows.
const (
	listingStudents = 20000
	listingVersions = 5
)

// consoleLoginLink matches the link `pkiboard console-link` prints.
var consoleLoginLink = regexp.MustCompile(`https?://127\.0\.0\.1:\d+/login\?t=[A-Za-z0-9_-]+`)

// curveListing measures `pkiboard submissions --assignment lab` (the command,
// as a process, reading board.db) and the console's assignment page with
// 100,000 submissions in the board's store. The store holds one real
// submission (a session of the bench's, with its content, receipt and
// evidence); the other 100,000 are copies of its row, made in board.db
// through its own schema (every CHECK applies) in transactions of 10,000
// while the board is stopped: 20,000 students, five versions each, with their
// own id, sequence, SID, version and time of receipt, and the real row's
// certificate, statement, signature and receipt bytes (which name the real
// student: synthetic, so `submissions --verify` of a copy would fail). The
// copies have no content file.
func (r *runner) curveListing() []row {
	in := newInstallWith(map[string]string{"ca": curveLimits, "board": curveLimits})
	defer in.remove()
	ca := in.start(r.bin, "ca")
	defer ca.stop()
	board := in.start(r.bin, "board", "--ca-addr", ca.addr)
	students := enrollStudents(in, ca.addr, "ecdsa-p256", 1)
	s := students[0]
	cfg := &session.ClientConfig{SID: s.sid, Certificate: s.cert, Key: s.key, Root: s.root, BoardName: "blackboard"}
	if err := submitOnce(board.addr, cfg, s.msg, sha256.Sum256(s.msg)); err != nil {
		fatalf("curve: the listing's real submission: %v", err)
	}
	board.stop()

	start := time.Now()
	n := populateBoard(in.path("data/board/board.db"), listingStudents, listingVersions)
	populate := time.Since(start)
	logf("curve: %d submissions copied into board.db in %.1fs (%d MiB)", n, populate.Seconds(), fileSize(in.path("data/board/board.db"))>>20)
	start = time.Now()
	board = in.start(r.bin, "board", "--ca-addr", ca.addr)
	boardStart := time.Since(start)
	defer board.stop()

	var cmdWall, cmdRSS []float64
	lines := 0
	for range r.count {
		wall, rss, out := runTimed(r.bin, "--config", in.config, "submissions", "--assignment", "lab")
		cmdWall, cmdRSS = append(cmdWall, float64(wall.Microseconds())/1000), append(cmdRSS, float64(rss)/(1<<20))
		lines = strings.Count(string(out), "\n")
	}
	logf("curve: submissions --assignment lab: %.0f ms, peak RSS %.1f MiB, %d lines", median(cmdWall), median(cmdRSS), lines)

	client, pageURL := consoleLogin(r.bin, in.config, "lab")
	pid := board.cmd.Process.Pid
	var pageWall, pageRSS []float64
	size := 0
	for range r.count {
		resetPeakRSS(pid)
		before := procStatus(pid, "VmRSS")
		t := time.Now()
		resp, err := client.Get(pageURL)
		if err != nil {
			fatalf("curve: GET %s: %v", pageURL, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			fatalf("curve: GET %s: %s %v\n%s", pageURL, resp.Status, err, tail(string(body)))
		}
		pageWall = append(pageWall, float64(time.Since(t).Microseconds())/1000)
		pageRSS = append(pageRSS, float64(procStatus(pid, "VmHWM")-before)/(1<<20))
		size = len(body)
	}
	logf("curve: the console's assignment page: %.0f ms, board peak RSS +%.1f MiB, %d KiB of HTML", median(pageWall), median(pageRSS), size>>10)

	r.raw("curve listing: %d submissions (1 real, the rest copies) populated in %.1fs, board.db %d MiB; board start %.2fs",
		n+1, populate.Seconds(), fileSize(in.path("data/board/board.db"))>>20, boardStart.Seconds())
	r.raw("curve listing: submissions --assignment lab ms %v, peak RSS MiB %v, %d lines", cmdWall, cmdRSS, lines)
	r.raw("curve listing: console assignment page ms %v, board peak RSS growth MiB %v, %d bytes", pageWall, pageRSS, size)
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "cost curve, %d submissions in the board's store (%d students × %d versions; medians of %d runs):\n", n+1, listingStudents, listingVersions, r.count)
	fmt.Fprintf(&tbl, "| what | time ms | memory MiB |\n|---|---|---|\n")
	fmt.Fprintf(&tbl, "| `pkiboard submissions --assignment lab` (process; %d lines) | %s | %s (its peak RSS) |\n", lines, num(median(cmdWall)), num(median(cmdRSS)))
	fmt.Fprintf(&tbl, "| console GET /assignments/lab (%d KiB of HTML) | %s | +%s (the board's peak RSS growth at the first GET; later ones reuse that heap: median +%s) |\n",
		size>>10, num(median(pageWall)), num(pageRSS[0]), num(median(pageRSS)))
	fmt.Fprintf(&tbl, "| board start with them | %s | — |\n", num(float64(boardStart.Microseconds())/1000))
	r.raw("%s", tbl.String())
	logf("%s", tbl.String())
	name := fmt.Sprintf("%d submissions stored", n+1)
	return []row{
		{name: "curve: `submissions --assignment lab`, " + name, baseline: "wall time of the command", unit: "ms", ours: cmdWall, note: "reported"},
		{name: "  its peak RSS", baseline: "VmHWM of the command, read while it runs", unit: "MiB", ours: cmdRSS, note: "reported"},
		{name: "curve: console assignment page, " + name, baseline: "GET /assignments/lab, logged in", unit: "ms", ours: pageWall, note: "reported"},
		{name: "  the board's peak RSS growth", baseline: fmt.Sprintf("VmHWM after − VmRSS before; the first GET: +%s MiB, later ones reuse its heap", num(pageRSS[0])),
			unit: "MiB", ours: pageRSS, note: "reported"},
	}
}

// populateBoard adds students × versions copies of the row of seq 1 to the
// board database at path (the board stopped), and returns how many.
func populateBoard(path string, students, versions int) int {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		fatalf("curve: %v", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("PRAGMA synchronous = OFF"); err != nil {
		fatalf("curve: %v", err)
	}
	stmt := `INSERT INTO submissions (seq, id, sid, serial, name, size, sha256, suite, received, peer, resumed, file,
		student_certificate, transcript, statement, signature, board_certificate, receipt,
		assignment, original, version, due, lock, late_ms, extended, terms, receipt_version)
	SELECT ?1, printf('%06d', ?1), ?2, serial, name, size, sha256, suite, ?3, peer, resumed, printf('%06d', ?1) || '.dat',
		student_certificate, transcript, statement, signature, board_certificate, receipt,
		assignment, original, ?4, due, lock, late_ms, extended, terms, receipt_version
	FROM submissions WHERE seq = 1`
	base := time.Now().UTC().Add(-24 * time.Hour)
	n := 0
	var tx *sql.Tx
	var ins *sql.Stmt
	for v := 1; v <= versions; v++ {
		for st := range students {
			if n%10000 == 0 {
				if tx != nil {
					if err := tx.Commit(); err != nil {
						fatalf("curve: populate board.db: %v", err)
					}
				}
				if tx, err = db.Begin(); err != nil {
					fatalf("curve: %v", err)
				}
				if ins, err = tx.Prepare(stmt); err != nil {
					fatalf("curve: %v", err)
				}
			}
			seq := n + 2
			received := base.Add(time.Duration(n) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
			res, err := ins.Exec(seq, fmt.Sprintf("c%05d", st), received, v)
			if err != nil {
				fatalf("curve: populate board.db: %v", err)
			}
			if k, _ := res.RowsAffected(); k != 1 {
				fatalf("curve: populate board.db: the real submission (seq 1) is missing")
			}
			n++
		}
	}
	if err := tx.Commit(); err != nil {
		fatalf("curve: populate board.db: %v", err)
	}
	// Into the database file, as a daemon's own checkpoints leave it.
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		fatalf("curve: populate board.db: %v", err)
	}
	return n
}

// consoleLogin logs in to the board's console with a link from
// console-link and returns the client holding the session and the URL of
// assignment's page.
func consoleLogin(bin, config, assignment string) (*http.Client, string) {
	_, _, out := runTimed(bin, "--config", config, "console-link", "--role", "board", "--as", "bench")
	link := consoleLoginLink.FindString(string(out))
	if link == "" {
		fatalf("curve: console-link printed no login link:\n%s", out)
	}
	u, _ := url.Parse(link)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(u.Scheme+"://"+u.Host+"/login", url.Values{"t": {u.Query().Get("t")}})
	if err != nil {
		fatalf("curve: console login: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		fatalf("curve: console login: %s, want 303", resp.Status)
	}
	return c, u.Scheme + "://" + u.Host + "/assignments/" + url.PathEscape(assignment)
}
