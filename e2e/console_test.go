package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// chromium returns the path of Debian's chromium (make deps installs it). It
// skips the test when there is none, unless PKIBOARD_REQUIRE_CHROMIUM=1 (make
// test) makes that a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PKIBOARD_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("no chromium on PATH: run make deps (it installs Debian's chromium)")
	}
	t.Skip("no chromium on PATH (make deps installs it; PKIBOARD_REQUIRE_CHROMIUM=1 makes this a failure)")
	return ""
}

// loginLink matches the link `pkiboard console-link` prints.
var loginLink = regexp.MustCompile(`https?://127\.0\.0\.1:\d+/login\?t=[A-Za-z0-9_-]+`)

// consoleLink asks the running daemon of role for a one-time login link
// bound to name, and returns it and the console's base URL.
func (s *system) consoleLink(role, name string) (link, base string) {
	s.t.Helper()
	r := s.mustRun(nil, "console-link", "--role", role, "--as", name)
	link = loginLink.FindString(r.stdout)
	if link == "" {
		s.t.Fatalf("console-link --role %s printed no login link:\n%s", role, r.stdout)
	}
	return link, link[:strings.Index(link, "/login")]
}

// TestConsoleInABrowser drives the staff console in headless Chromium (issue
// 15's "Must show"): staff log in through the one-time link with the keyboard
// alone, the board's assignment pages count what the student processes did —
// on time, late, missing, a resubmission as version 2 — and mark the late
// ones; a submission downloaded from the page has the SHA-256 the page shows
// and the student sent; every input of every page has a label; and a
// certificate revoked through the CA's console, confirmed and posted with its
// CSRF token, refuses that student's next session. With
// PKIBOARD_SCREENSHOTS=DIR it writes PNGs of the main pages, 1024 wide.
func TestConsoleInABrowser(t *testing.T) {
	chrome := chromium(t)
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	assignments := fmt.Sprintf(`
[[assignment]]
id = "hw-open"
title = "Open now"
opens = %q
due = %q
lock = %q
accept = ["*.txt"]

[[assignment]]
id = "hw-late"
title = "Past due, late work taken"
opens = %q
due = %q
lock = %q
accept = ["*.txt"]
`, at(-time.Hour), at(time.Hour), at(2*time.Hour), at(-3*time.Hour), at(-time.Hour), at(time.Hour))
	roster := "sid,name,email\n"
	for i := 1; i <= 6; i++ {
		roster += fmt.Sprintf("s%02d,Student %d,s%02d@example.edu\n", i, i, i)
	}
	// The test configs put each daemon's http_listen on an ephemeral port.
	in, s := startCourse(t, map[string]string{"assignments.toml": assignments, "roster.csv": roster,
		"report.txt": "my report\n", "report2.txt": "my better report\n"})
	submit := func(assignment, report string, ids ...string) result {
		t.Helper()
		return s.student(nil, "--ids", strings.Join(ids, ","), "--assignment", assignment, "--report", in.path(report))
	}
	for _, sub := range []struct {
		assignment, report string
		ids                []string
	}{
		{"hw-open", "report.txt", []string{"s01", "s02"}},
		{"hw-late", "report.txt", []string{"s03", "s04", "s05"}},
		{"hw-open", "report2.txt", []string{"s01"}}, // s01's version 2
	} {
		if r := submit(sub.assignment, sub.report, sub.ids...); r.code != 0 {
			t.Fatalf("%v to %s: exit %d\n%s\n%s", sub.ids, sub.assignment, r.code, r.stdout, r.stderr)
		}
	}

	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.WindowSize(1024, 768),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelTimeout()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("the text of %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	// Every input and select has a label; the page has exactly one h1.
	labelled := func(page string) {
		t.Helper()
		if bad := eval(`Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea')).filter(e => !e.labels || e.labels.length == 0).map(e => e.outerHTML).join('\n')`); bad != "" {
			t.Errorf("%s: inputs without a label:\n%s", page, bad)
		}
		if n := eval(`String(document.querySelectorAll('h1').length)`); n != "1" {
			t.Errorf("%s: %s h1 elements, want 1", page, n)
		}
	}
	shots := os.Getenv("PKIBOARD_SCREENSHOTS")
	screenshot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		raw, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&out, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The board: log in with the keyboard alone. The link's page holds one
	// button; Tab reaches it and Enter posts it.
	link, board := s.consoleLink("board", "staff-ana")
	do("open the login link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("button")),
		chromedp.KeyEvent("\t"))
	if focused := eval(`document.activeElement.tagName + ' ' + document.activeElement.textContent.trim()`); !strings.HasPrefix(focused, "BUTTON") {
		t.Fatalf("Tab on the login page focused %q, want its button", focused)
	}
	do("press Enter", chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS(`tr[data-assignment="hw-late"]`)))
	if got := text("h1"); got != "Assignments" {
		t.Errorf("after the login: h1 %q, want Assignments", got)
	}
	if staff := text(".logout strong"); staff != "staff-ana" {
		t.Errorf("signed in as %q, want staff-ana", staff)
	}
	labelled("the index")
	screenshot("console-board-index")
	// Keyboard: Enter on a focused assignment's link opens it.
	do("focus hw-late's link", chromedp.Focus(chromedp.CSS(`a[href="/assignments/hw-late"]`)), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS("#count-late")))

	// The counts and the late marks are what the students did.
	type line struct{ sid, status, late, version string }
	rows := func() map[string]line {
		t.Helper()
		out := map[string]line{}
		raw := eval(`Array.from(document.querySelectorAll('tbody tr[data-sid]')).map(r => [r.dataset.sid, r.dataset.status, r.querySelector('td.late').textContent.trim(), r.children[3].textContent.trim()].join('|')).join('\n')`)
		for _, l := range strings.Split(raw, "\n") {
			f := strings.Split(l, "|")
			if len(f) == 4 {
				out[f[0]] = line{f[0], f[1], f[2], f[3]}
			}
		}
		return out
	}
	for _, tc := range []struct {
		assignment string
		counts     map[string]string // element id → text
		status     map[string]string // SID → status; the others missing
	}{
		{"hw-late", map[string]string{"count-roster": "6", "count-on-time": "0", "count-late": "3", "count-missing": "3"},
			map[string]string{"s03": "late", "s04": "late", "s05": "late"}},
		{"hw-open", map[string]string{"count-roster": "6", "count-on-time": "2", "count-late": "0", "count-missing": "4"},
			map[string]string{"s01": "on-time", "s02": "on-time"}},
	} {
		do("open "+tc.assignment, chromedp.Navigate(board+"/assignments/"+tc.assignment), chromedp.WaitVisible(chromedp.CSS("#count-late")))
		for id, want := range tc.counts {
			if got := text("#" + id); got != want {
				t.Errorf("%s: #%s is %q, want %q", tc.assignment, id, got, want)
			}
		}
		got := rows()
		if len(got) != 6 {
			t.Errorf("%s: %d rows, want the 6 of the roster", tc.assignment, len(got))
		}
		for i := 1; i <= 6; i++ {
			sid := fmt.Sprintf("s%02d", i)
			want := tc.status[sid]
			if want == "" {
				want = "missing"
			}
			l := got[sid]
			if l.status != want || (want == "late") != strings.HasPrefix(l.late, "late ") {
				t.Errorf("%s: %s is %q with late mark %q, want %s", tc.assignment, sid, l.status, l.late, want)
			}
		}
		if tc.assignment == "hw-open" && got["s01"].version != "2 of 2" {
			t.Errorf("hw-open: s01's active version %q, want 2 of 2", got["s01"].version)
		}
		if eval(`document.querySelector('svg.chart title').textContent`) == "" || eval(`String(document.querySelectorAll('svg.chart .mark-due').length)`) == "0" {
			t.Errorf("%s: the chart has no title or no due mark", tc.assignment)
		}
		labelled(tc.assignment)
		screenshot("console-board-" + tc.assignment)
	}
	// Filtered by the GET form: late only.
	do("filter late only", chromedp.Navigate(board+"/assignments/hw-late?show=late"), chromedp.WaitVisible(chromedp.CSS("#shown")))
	if got := rows(); len(got) != 3 {
		t.Errorf("hw-late, late only: %d rows, want 3", len(got))
	}

	// Two students a page: the first page has the first two SIDs and a Next
	// link; following it (with the keyboard) shows the next two, the counts
	// still of every student.
	do("two a page", chromedp.Navigate(board+"/assignments/hw-late?per=2"), chromedp.WaitVisible(chromedp.CSS("nav.pager")))
	first := rows()
	do("follow the next page's link", chromedp.Focus(chromedp.CSS(`nav.pager a[rel="next"]`)), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS(`nav.pager a[rel="prev"]`)))
	second := rows()
	if len(first) != 2 || len(second) != 2 {
		t.Errorf("hw-late two a page: %d then %d rows, want 2 and 2", len(first), len(second))
	}
	for sid := range second {
		if _, ok := first[sid]; ok {
			t.Errorf("hw-late's second page shows %s again", sid)
		}
	}
	if got, want := text("#shown"), "3–4 of 6 students shown, page 2 of 3."; got != want {
		t.Errorf("hw-late's second page: %q, want %q", got, want)
	}
	if got := text("#count-roster"); got != "6" {
		t.Errorf("hw-late's second page counts %s on the roster, want 6", got)
	}
	labelled("hw-late, page 2")

	// s01's page: both versions, each receipt verifying; the download of
	// the active one has the SHA-256 the page shows and the student sent.
	do("open s01's page", chromedp.Navigate(board+"/assignments/hw-open/students/s01"), chromedp.WaitVisible(chromedp.CSS("section.version")))
	if n := eval(`String(document.querySelectorAll('section.version').length)`); n != "2" {
		t.Errorf("s01's page shows %s versions, want 2", n)
	}
	if v := eval(`Array.from(document.querySelectorAll('dd.receipt')).map(d => d.textContent.trim().split(' ')[0]).join(',')`); v != "yes,yes" {
		t.Errorf("s01's receipts verify: %q, want yes,yes", v)
	}
	pageHash := eval(`document.querySelector('section.version code.hash').textContent.trim()`)
	labelled("s01's page")
	screenshot("console-board-student")
	dl := t.TempDir()
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	do("download version 2", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dl, EventsEnabled: new(true)})
		return err
	}), chromedp.Click(chromedp.CSS(`section.version a[href$="/content"]`)))
	var file string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the download was cancelled")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			file = filepath.Join(dl, ev.GUID)
			break
		}
	}
	content, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	want := sha256.Sum256([]byte("my better report\n"))
	if hex.EncodeToString(sum[:]) != pageHash || sum != want {
		t.Errorf("the download's SHA-256 %x; the page shows %s; s01 sent %x", sum, pageHash, want)
	}

	// The whole export of hw-late, streamed as a zip: the manifest and each
	// late student's folder.
	progress = chromedp.Events(ctx, browser.DownloadProgress)
	do("download the export", chromedp.Navigate(board+"/assignments/hw-late"), chromedp.WaitVisible(chromedp.CSS("#count-late")),
		chromedp.Click(chromedp.CSS(`a[href$="/export.zip"]`)))
	file = ""
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			file = filepath.Join(dl, ev.GUID)
			break
		}
	}
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatalf("the export: %v", err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	zr.Close()
	for _, want := range []string{"manifest.csv", "s03/report.txt", "s03/receipt.json", "s04/statement.sig", "s05/certificate.pem"} {
		if !slices.Contains(names, want) {
			t.Errorf("the export holds %v, not %s", names, want)
		}
	}

	// The CA: find s03's certificate, revoke it (a confirmation, then the
	// POST), and see her next session refused.
	link, caBase := s.consoleLink("ca", "staff-ana")
	do("log in to the CA", chromedp.Navigate(link), chromedp.Click(chromedp.CSS("button")), chromedp.WaitVisible(chromedp.CSS("form.filters")))
	do("search s03", chromedp.Navigate(caBase+"/?q=s03&status=valid"), chromedp.WaitVisible(chromedp.CSS(`tr[data-sid="s03"] a`)))
	labelled("the certificates")
	do("s03's certificate", chromedp.Navigate(caBase+"/"), chromedp.WaitVisible(chromedp.CSS(`tr[data-sid="s03"] a`)))
	screenshot("console-ca-certificates")
	do("open s03's certificate", chromedp.Click(chromedp.CSS(`tr[data-sid="s03"] a`)), chromedp.WaitVisible(chromedp.CSS("#cert-status")),
		chromedp.Click(chromedp.CSS("a.danger")), chromedp.WaitVisible(chromedp.CSS("#r-reason")))
	labelled("the revocation's confirmation")
	screenshot("console-ca-revoke")
	do("revoke", chromedp.SetValue(chromedp.CSS("#r-reason"), "1"), chromedp.Click(chromedp.CSS("button.danger")),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	if got := text("#cert-status"); !strings.HasPrefix(got, "revoked") || !strings.Contains(got, "keyCompromise") {
		t.Errorf("after the revocation the certificate is %q, want revoked (keyCompromise)", got)
	}
	do("tokens", chromedp.Navigate(caBase+"/tokens?all=1"), chromedp.WaitVisible(chromedp.CSS("form.filters")))
	labelled("the tokens")
	if r := submit("hw-open", "report.txt", "s03"); r.code == 0 || !strings.Contains(r.stderr, "s03: refused (cert-revoked)") {
		t.Errorf("s03's session after the revocation in the console: exit %d\n%s", r.code, r.stderr)
	}
	if r := s.mustRun(nil, "certs", "--json"); !strings.Contains(r.stdout, `"revoked"`) {
		t.Errorf("certs after the revocation:\n%s", r.stdout)
	}
}
