package console

import (
	"cmp"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"pkiboard/board"
	"pkiboard/internal/roster"
	"pkiboard/session"
	"pkiboard/wire"
)

// BoardOptions is what the board's console reads and writes.
type BoardOptions struct {
	Store *board.Store
	// Assignments returns the assignments in force (the assignments file
	// as it is now, or the lab's one).
	Assignments func() []board.Assignment
	// Roster returns the course's roster (board.roster_file); nil for none.
	Roster func() ([]roster.Entry, error)
	// Root is the root receipts and statements are verified against.
	Root *x509.Certificate
	// CRL returns the CRL the board holds, or nil; the student pages say
	// from it whether a certificate was revoked. Optional.
	CRL func() *x509.RevocationList
	// Export writes the export of an assignment as a zip archive to w
	// (roles.ExportArchive); without it the page offers no such download.
	Export func(assignment string, w io.Writer) error
	Log    *zap.Logger
	Now    func() time.Time
}

// boardConsole serves the board's pages.
type boardConsole struct {
	console
	o BoardOptions
}

// Board registers the board's console pages on m.
func Board(m Mux, o BoardOptions) {
	register(m, newBoard(o).routes())
}

func newBoard(o BoardOptions) *boardConsole {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Roster == nil {
		o.Roster = func() ([]roster.Entry, error) { return nil, nil }
	}
	return &boardConsole{o: o, console: console{
		role:  "board",
		nav:   []link{{Href: "/", Text: "Assignments"}, {Href: "/audit", Text: "Audit"}},
		pages: parsePages("board_index.html", "board_assignment.html", "board_student.html", "board_audit.html", "message.html"),
		log:   o.Log,
		now:   o.Now,
	}}
}

// routes are the board's pages.
func (b *boardConsole) routes() []route {
	return []route{
		styleRoute(),
		{"GET /{$}", b.index},
		{"GET /audit", b.audit},
		{"GET /assignments/{a}", b.assignment},
		{"GET /assignments/{a}/listing.csv", b.listingCSV},
		{"GET /assignments/{a}/export.zip", b.exportZip},
		{"GET /assignments/{a}/students/{sid}", b.student},
		{"POST /assignments/{a}/students/{sid}/extend", b.extend},
		{"POST /assignments/{a}/students/{sid}/activate", b.activate},
		{"GET /submissions/{id}/content", b.content},
		{"GET /submissions/{id}/receipt.json", b.receipt},
	}
}

// assignment returns the assignment id, or nil.
func (b *boardConsole) find(id string) *board.Assignment {
	list := b.o.Assignments()
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// summary is one assignment's line on the index.
type summary struct {
	A         board.Assignment
	Counts    board.Counts
	Submitted int // students whose work is held, on the roster or not
	Versions  int // submissions, every version
}

func (b *boardConsole) index(w http.ResponseWriter, r *http.Request) {
	entries, err := b.o.Roster()
	if err != nil {
		b.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	var list []summary
	for _, a := range b.o.Assignments() {
		subs, err := b.o.Store.Summaries(a.ID, "")
		if err != nil {
			b.fail(w, r, http.StatusInternalServerError, err.Error())
			return
		}
		ext, err := b.o.Store.Extensions(a.ID)
		if err != nil {
			b.fail(w, r, http.StatusInternalServerError, err.Error())
			return
		}
		counted := board.CountedOf(subs)
		_, n := board.ProgressOf(entries, counted, ext)
		list = append(list, summary{A: a, Counts: n, Submitted: len(counted), Versions: len(subs)})
	}
	b.render(w, r, http.StatusOK, "board_index.html", "Assignments", struct {
		List      []summary
		HasRoster bool
	}{list, entries != nil}, "")
}

// row is one student's line in an assignment's table.
type row struct {
	board.Progress
	Versions int
	Size     int64
	SHA256   string
	ID       string // the active version's submission id
	Verified string // "yes", or "no: " and why; "" without a submission
}

// Verifies reports whether the row's statement verified.
func (r row) Verifies() bool { return r.Verified == "yes" }

// rows returns every student's line of assignment a: the roster's, then
// those who submitted without being on it; and the submissions, without
// their evidence (board.Store.Summaries). Verified is not filled in: verify
// fills it in for the rows a page shows.
func (b *boardConsole) rows(a string) ([]row, board.Counts, []board.Submitted, error) {
	entries, err := b.o.Roster()
	if err != nil {
		return nil, board.Counts{}, nil, err
	}
	subs, err := b.o.Store.Summaries(a, "")
	if err != nil {
		return nil, board.Counts{}, nil, err
	}
	ext, err := b.o.Store.Extensions(a)
	if err != nil {
		return nil, board.Counts{}, nil, err
	}
	lines, n := board.ProgressOf(entries, board.CountedOf(subs), ext)
	active := map[string]*board.Submitted{}
	versions := map[string]int{}
	for i := range subs {
		versions[subs[i].SID]++
		if subs[i].Active {
			active[subs[i].SID] = &subs[i]
		}
	}
	out := make([]row, 0, len(lines))
	for _, p := range lines {
		rw := row{Progress: p, Versions: versions[p.SID]}
		if s := active[p.SID]; s != nil {
			rw.Size, rw.SHA256, rw.ID = s.Size, hex.EncodeToString(s.SHA256[:]), s.ID
		}
		out = append(out, rw)
	}
	return out, n, subs, nil
}

// verify fills in Verified of rows that have a submission: it reads each
// one's evidence (board.Store.Get) and checks her signed statement and the
// stored receipt against the root.
func (b *boardConsole) verify(rows []row) {
	for i := range rows {
		if rows[i].ID == "" || rows[i].Verified != "" {
			continue
		}
		rec, err := b.o.Store.Get(rows[i].ID)
		if err != nil {
			rows[i].Verified = verdict(err.Error())
			continue
		}
		rows[i].Verified = verdict(rec.VerifySigned(b.o.Root))
	}
}

// verdict is what a page says of a problem: "yes" for none.
func verdict(problem string) string {
	if problem == "" {
		return "yes"
	}
	return "no: " + problem
}

// columns are the sortable columns of an assignment's table: the query's
// name, the header's text, and the order.
var columns = []struct {
	Key, Text string
	less      func(x, y *row) int
}{
	{"sid", "SID", func(x, y *row) int { return strings.Compare(x.SID, y.SID) }},
	{"name", "Name", func(x, y *row) int { return strings.Compare(x.Name, y.Name) }},
	{"status", "Status", func(x, y *row) int { return strings.Compare(x.Status, y.Status) }},
	{"version", "Active version", func(x, y *row) int { return cmp.Compare(x.Version, y.Version) }},
	{"received", "Received", func(x, y *row) int { return cmp.Compare(receivedMS(x), receivedMS(y)) }},
	{"late", "Late", func(x, y *row) int { return cmp.Compare(x.LateMS, y.LateMS) }},
	{"size", "Size", func(x, y *row) int { return cmp.Compare(x.Size, y.Size) }},
	{"sha256", "SHA-256", func(x, y *row) int { return strings.Compare(x.SHA256, y.SHA256) }},
	{"verified", "Statement verified", func(x, y *row) int { return strings.Compare(x.Verified, y.Verified) }},
}

func receivedMS(r *row) int64 {
	if r.Received == nil {
		return 0
	}
	return r.Received.UnixMilli()
}

// view is the query of an assignment's page: the sort and the filters.
type view struct {
	Sort string // a column's Key
	Desc bool
	Show string // "", "late", "missing", "on-time", "submitted"
	Q    string // part of a SID or a name
	Page int    // the page of the table shown, from 1
	Per  int    // rows per page
}

// DefaultPerPage is how many students a page of an assignment's table shows
// unless its query says (per=, 1 to MaxPerPage).
const DefaultPerPage, MaxPerPage = 100, 1000

// viewOf reads the query; anything it does not know is the default.
func viewOf(q url.Values) view {
	v := view{Sort: "sid", Desc: q.Get("dir") == "desc", Show: q.Get("show"), Q: strings.TrimSpace(q.Get("q")), Page: 1, Per: DefaultPerPage}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 1 {
		v.Page = n
	}
	if n, err := strconv.Atoi(q.Get("per")); err == nil && n >= 1 && n <= MaxPerPage {
		v.Per = n
	}
	for _, c := range columns {
		if c.Key == q.Get("sort") {
			v.Sort = c.Key
		}
	}
	switch v.Show {
	case "late", "missing", "on-time", "submitted":
	default:
		v.Show = ""
	}
	if len(v.Q) > 255 {
		v.Q = v.Q[:255]
	}
	return v
}

// apply filters and sorts rows as v says.
func (v view) apply(rows []row) []row {
	q := strings.ToLower(v.Q)
	out := rows[:0:0]
	for _, r := range rows {
		switch {
		case v.Show == "late" && r.Status != board.StatusLate,
			v.Show == "missing" && r.Status != board.StatusMissing,
			v.Show == "on-time" && r.Status != board.StatusOnTime,
			v.Show == "submitted" && r.Status == board.StatusMissing,
			q != "" && !strings.Contains(strings.ToLower(r.SID), q) && !strings.Contains(strings.ToLower(r.Name), q):
			continue
		}
		out = append(out, r)
	}
	for _, c := range columns {
		if c.Key == v.Sort {
			slices.SortStableFunc(out, func(x, y row) int {
				d := c.less(&x, &y)
				if v.Desc {
					d = -d
				}
				if d == 0 { // ties by SID, ascending either way
					d = strings.Compare(x.SID, y.SID)
				}
				return d
			})
		}
	}
	return out
}

// header is a column header: its text, the link that sorts by it, and how
// it is sorted now (aria-sort).
type header struct {
	Key, Text, Href, Sort string
}

// headers returns the column headers of the table under v.
func (v view) headers(base string) []header {
	var out []header
	for _, c := range columns {
		h := header{Key: c.Key, Text: c.Text, Sort: "none"}
		next := v
		next.Sort, next.Desc, next.Page = c.Key, false, 1
		if v.Sort == c.Key {
			h.Sort = "ascending"
			if v.Desc {
				h.Sort = "descending"
			}
			next.Desc = !v.Desc
		}
		h.Href = base + "?" + next.query().Encode()
		out = append(out, h)
	}
	return out
}

func (v view) query() url.Values {
	q := url.Values{"sort": {v.Sort}}
	if v.Desc {
		q.Set("dir", "desc")
	}
	if v.Show != "" {
		q.Set("show", v.Show)
	}
	if v.Q != "" {
		q.Set("q", v.Q)
	}
	if v.Page > 1 {
		q.Set("page", strconv.Itoa(v.Page))
	}
	if v.Per != DefaultPerPage {
		q.Set("per", strconv.Itoa(v.Per))
	}
	return q
}

// pager is the paging of an assignment's table: which rows the page shows
// and the links to the others ("" where there is none to go to).
type pager struct {
	Page, Pages             int
	From, To, Of            int // the rows shown, from 1, of the rows the filter keeps
	First, Prev, Next, Last string
}

// page cuts the page v asks for out of rows (a page past the last is the
// last), and returns the links to the others under base.
func (v view) page(rows []row, base string) ([]row, pager) {
	p := pager{Of: len(rows), Pages: max(1, (len(rows)+v.Per-1)/v.Per)}
	p.Page = min(v.Page, p.Pages)
	start, end := (p.Page-1)*v.Per, min(p.Page*v.Per, len(rows))
	p.From, p.To = min(start+1, end), end
	link := func(n int) string {
		next := v
		next.Page = n
		return base + "?" + next.query().Encode()
	}
	if p.Page > 1 {
		p.First, p.Prev = link(1), link(p.Page-1)
	}
	if p.Page < p.Pages {
		p.Next, p.Last = link(p.Page+1), link(p.Pages)
	}
	return rows[start:end], p
}

func (b *boardConsole) assignment(w http.ResponseWriter, r *http.Request) {
	a := b.find(r.PathValue("a"))
	if a == nil {
		b.fail(w, r, http.StatusNotFound, "The board serves no such assignment.")
		return
	}
	rows, n, subs, err := b.rows(a.ID)
	if err != nil {
		b.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	v := viewOf(r.URL.Query())
	base := "/assignments/" + url.PathEscape(a.ID)
	shown := v.apply(rows)
	if v.Sort == "verified" {
		// The order needs every row's verdict.
		b.verify(shown)
		shown = v.apply(shown)
	}
	page, p := v.page(shown, base)
	b.verify(page)
	b.render(w, r, http.StatusOK, "board_assignment.html", a.ID, assignmentPage{a, base, n, page, len(rows), v, v.headers(base), p,
		chartOf(a, subs), b.o.Export != nil}, "")
}

// assignmentPage is what board_assignment.html shows.
type assignmentPage struct {
	A       *board.Assignment
	Base    string
	Counts  board.Counts
	Rows    []row // the page's
	All     int   // every student's row, before the filter
	View    view
	Headers []header
	Pager   pager
	Chart   *chart
	Export  bool
}

// listingCSV downloads an assignment's table, every student, as CSV.
func (b *boardConsole) listingCSV(w http.ResponseWriter, r *http.Request) {
	a := b.find(r.PathValue("a"))
	if a == nil {
		b.fail(w, r, http.StatusNotFound, "The board serves no such assignment.")
		return
	}
	rows, _, _, err := b.rows(a.ID)
	if err != nil {
		b.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	b.verify(rows)
	attachment(w, wire.SafeName(a.ID, "assignment")+"-listing.csv", "text/csv; charset=utf-8")
	cw := csv.NewWriter(w)
	cw.Write([]string{"sid", "name", "on_roster", "status", "version", "versions", "received", "late_ms", "size", "sha256",
		"statement_verified", "extended_until", "id"})
	for _, rw := range rows {
		version, received, until, size := "", "", "", ""
		if rw.Version > 0 {
			version, size = strconv.Itoa(rw.Version), strconv.FormatInt(rw.Size, 10)
		}
		if rw.Received != nil {
			received = rw.Received.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		if rw.Extended != nil {
			until = rw.Extended.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		cw.Write([]string{csvSafe(rw.SID), csvSafe(rw.Name), strconv.FormatBool(rw.OnRoster), rw.Status, version,
			strconv.Itoa(rw.Versions), received, strconv.FormatInt(rw.LateMS, 10), size, rw.SHA256, rw.Verified, until, rw.ID})
	}
	cw.Flush()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula: a value
// that begins with =, +, - or @ gets a leading apostrophe.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// exportZip downloads the whole export of an assignment, streamed.
func (b *boardConsole) exportZip(w http.ResponseWriter, r *http.Request) {
	a := b.find(r.PathValue("a"))
	if a == nil || b.o.Export == nil {
		b.fail(w, r, http.StatusNotFound, "The board serves no such assignment, or no export.")
		return
	}
	attachment(w, wire.SafeName(a.ID, "assignment")+"-export.zip", "application/zip")
	if err := b.o.Export(a.ID, w); err != nil {
		// The archive is cut short, without its end: an unzip says so.
		b.log.Error("console: export failed", zap.String("assignment", a.ID), zap.Error(err))
	}
}

// version is one of a student's versions on her page.
type version struct {
	board.Submitted
	SHA256Hex  string
	Receipt    string // "yes", or "no: " and why: the receipt file verifies against the root
	Evidence   board.Evidence
	LateMS     int64
	ReceivedAt time.Time
}

func (b *boardConsole) student(w http.ResponseWriter, r *http.Request) {
	b.showStudent(w, r, http.StatusOK, done[r.URL.Query().Get("done")], "")
}

// showStudent renders a student's page, with message (what was done) or
// problem (what went wrong).
func (b *boardConsole) showStudent(w http.ResponseWriter, r *http.Request, code int, message, problem string) {
	a := b.find(r.PathValue("a"))
	sid := r.PathValue("sid")
	if a == nil {
		b.fail(w, r, http.StatusNotFound, "The board serves no such assignment.")
		return
	}
	subs, err := b.o.Store.Submissions(a.ID, sid)
	if err != nil {
		b.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	st, err := b.o.Store.Standing(a.ID, sid)
	if err != nil {
		b.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	var crl *x509.RevocationList
	if b.o.CRL != nil {
		crl = b.o.CRL()
	}
	now := b.now()
	vs := make([]version, 0, len(subs))
	for i := len(subs) - 1; i >= 0; i-- { // newest first
		s := subs[i]
		vs = append(vs, version{Submitted: s, SHA256Hex: hex.EncodeToString(s.SHA256[:]),
			Receipt: verdict(receiptProblem(&s.Record, b.o.Root, now)), Evidence: b.o.Store.Verify(&s.Record, b.o.Root, crl),
			LateMS: int64(s.LateMS), ReceivedAt: s.Received})
	}
	name := ""
	if entries, err := b.o.Roster(); err == nil {
		for _, e := range entries {
			if e.SID == sid {
				name = e.Name
			}
		}
	}
	terms := a.TermsFor(st.Extension)
	f := struct {
		A        *board.Assignment
		SID      string
		Name     string
		Base     string
		Versions []version
		Standing board.Standing
		Terms    board.Terms
		Problem  string
	}{a, sid, name, "/assignments/" + url.PathEscape(a.ID) + "/students/" + url.PathEscape(sid), vs, st, terms, problem}
	b.render(w, r, code, "board_student.html", sid+" — "+a.ID, f, message)
}

// receiptProblem checks a stored submission's receipt as its student's copy
// is checked: the receipt file, parsed back and verified against root at
// now (session.ParseReceiptFile, ReceiptFile.Verify); "" when it verifies.
func receiptProblem(rec *board.Record, root *x509.Certificate, now time.Time) string {
	data, err := rec.ReceiptFile()
	if err != nil {
		return err.Error()
	}
	f, err := session.ParseReceiptFile(data)
	if err != nil {
		return err.Error()
	}
	if err := f.Verify(root, now); err != nil {
		return err.Error()
	}
	return ""
}

// extend grants the student an extension, audited under the staff's name
// in the same transaction (board.Store.Extend).
func (b *boardConsole) extend(w http.ResponseWriter, r *http.Request) {
	a := b.find(r.PathValue("a"))
	if a == nil {
		b.fail(w, r, http.StatusNotFound, "The board serves no such assignment.")
		return
	}
	sid := r.PathValue("sid")
	until, err := time.Parse(time.RFC3339, strings.TrimSpace(r.PostFormValue("until")))
	switch {
	case err != nil:
		b.showStudent(w, r, http.StatusBadRequest, "", "The end of the extension is not RFC 3339 with a zone: write it like 2026-11-29T23:59:00+08:00.")
		return
	case !a.Opens.IsZero() && !until.After(a.Opens):
		b.showStudent(w, r, http.StatusBadRequest, "", "The end of the extension is not after the assignment opens: give a later time.")
		return
	}
	e := board.Extension{Assignment: a.ID, SID: sid, Until: until, Reason: strings.TrimSpace(r.PostFormValue("reason")), GrantedBy: staffOf(r)}
	if err := b.o.Store.Extend(e); err != nil {
		b.showStudent(w, r, http.StatusBadRequest, "", err.Error())
		return
	}
	b.log.Info("console: extension granted", zap.String("assignment", a.ID), zap.String("sid", sid), zap.String("staff", e.GrantedBy))
	http.Redirect(w, r, "/assignments/"+url.PathEscape(a.ID)+"/students/"+url.PathEscape(sid)+"?done=extended", http.StatusSeeOther)
}

// activate marks a version as the one that counts, audited under the
// staff's name in the same transaction (board.Store.Activate).
func (b *boardConsole) activate(w http.ResponseWriter, r *http.Request) {
	a := b.find(r.PathValue("a"))
	if a == nil {
		b.fail(w, r, http.StatusNotFound, "The board serves no such assignment.")
		return
	}
	sid := r.PathValue("sid")
	v, err := strconv.Atoi(r.PostFormValue("version"))
	if err != nil {
		b.showStudent(w, r, http.StatusBadRequest, "", "Choose a version.")
		return
	}
	if err := b.o.Store.Activate(a.ID, sid, v, staffOf(r)); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, board.ErrNoVersion) {
			code = http.StatusBadRequest
		}
		b.showStudent(w, r, code, "", err.Error())
		return
	}
	b.log.Info("console: version activated", zap.String("assignment", a.ID), zap.String("sid", sid), zap.Int("version", v), zap.String("staff", staffOf(r)))
	http.Redirect(w, r, "/assignments/"+url.PathEscape(a.ID)+"/students/"+url.PathEscape(sid)+"?done=activated", http.StatusSeeOther)
}

// record returns the submission the path names, or answers 404.
func (b *boardConsole) record(w http.ResponseWriter, r *http.Request) *board.Record {
	rec, err := b.o.Store.Get(r.PathValue("id"))
	switch {
	case errors.Is(err, board.ErrNotFound):
		b.fail(w, r, http.StatusNotFound, "No such submission.")
		return nil
	case err != nil:
		b.fail(w, r, http.StatusInternalServerError, err.Error())
		return nil
	}
	return rec
}

// content downloads a submission's content as an attachment under its
// stored safe name, streamed from the store, with its SHA-256 in
// Repr-Digest (RFC 9530) and X-Content-SHA256.
func (b *boardConsole) content(w http.ResponseWriter, r *http.Request) {
	rec := b.record(w, r)
	if rec == nil {
		return
	}
	f, err := os.Open(b.o.Store.ContentPath(rec))
	if err != nil {
		b.fail(w, r, http.StatusInternalServerError, "The stored content cannot be read: "+err.Error())
		return
	}
	defer f.Close()
	attachment(w, wire.SafeName(rec.Name, "submission"), "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(rec.Size, 10))
	w.Header().Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(rec.SHA256[:])+":")
	w.Header().Set("X-Content-SHA256", hex.EncodeToString(rec.SHA256[:]))
	if _, err := io.Copy(w, f); err != nil {
		b.log.Warn("console: download cut short", zap.String("id", rec.ID), zap.Error(err))
	}
}

// receipt downloads a submission's receipt file, exactly as the student's.
func (b *boardConsole) receipt(w http.ResponseWriter, r *http.Request) {
	rec := b.record(w, r)
	if rec == nil {
		return
	}
	data, err := rec.ReceiptFile()
	if err != nil {
		b.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	attachment(w, fmt.Sprintf("receipt-%s.json", wire.SafeName(rec.ID, "submission")), "application/json")
	w.Write(data)
}

func (b *boardConsole) audit(w http.ResponseWriter, r *http.Request) {
	log, err := b.o.Store.AuditLog()
	if err != nil {
		b.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	slices.Reverse(log) // newest first
	if len(log) > 500 {
		log = log[:500]
	}
	b.render(w, r, http.StatusOK, "board_audit.html", "Audit", log, "")
}
