package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/web"
)

// Mux is where the pages are registered: a *web.Server, whose Handle lets
// only an open session in and checks a POST's CSRF token.
type Mux interface {
	Handle(pattern string, h http.Handler)
}

//go:embed templates/*.html static/style.css
var files embed.FS

// route is one console page: its http.ServeMux pattern and its handler.
type route struct {
	pattern string
	handler http.HandlerFunc
}

// register registers every route on m.
func register(m Mux, routes []route) {
	for _, rt := range routes {
		m.Handle(rt.pattern, rt.handler)
	}
}

// styleRoute serves the style sheet.
func styleRoute() route {
	css, err := fs.ReadFile(files, "static/style.css")
	if err != nil {
		panic(err) // embedded: present at build time
	}
	return route{"GET /style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Write(css)
	}}
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"timeMS": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"bytes": humanBytes,
	"late": func(ms int64) string {
		if ms <= 0 {
			return ""
		}
		return "late " + (time.Duration(ms) * time.Millisecond).String()
	},
	"short": func(s string) string {
		if len(s) > 16 {
			return s[:16] + "…"
		}
		return s
	},
	"seg": url.PathEscape,
}

// humanBytes writes n bytes for a person.
func humanBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

// pages holds the parsed templates, by page file name.
type pages map[string]*template.Template

// parsePages parses each named page with the layout.
func parsePages(names ...string) pages {
	p := pages{}
	for _, name := range names {
		p[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name))
	}
	return p
}

// frame is what the layout shows around a page.
type frame struct {
	Role    string // "board" or "CA"
	Title   string
	Staff   string
	CSRF    string
	Nav     []link
	Message string // a line saying what the last action did; "" for none
	Error   string // what went wrong; "" for none
	Page    any    // the page's own data
}

// link is a navigation link.
type link struct {
	Href, Text string
	Current    bool
}

// console is what both consoles share: the templates, the log and the
// clock.
type console struct {
	role  string
	nav   []link
	pages pages
	log   *zap.Logger
	now   func() time.Time
}

// render writes page name with data under the layout, answering code. It
// renders into a buffer first, so that a template error becomes a 500, not
// half a page.
func (c *console) render(w http.ResponseWriter, r *http.Request, code int, name, title string, data any, message string) {
	f := frame{Role: c.role, Title: title, Staff: web.Staff(r), CSRF: web.CSRFToken(r), Message: message, Page: data}
	for _, l := range c.nav {
		l.Current = l.Href == r.URL.Path || (l.Href != "/" && strings.HasPrefix(r.URL.Path, l.Href))
		f.Nav = append(f.Nav, l)
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", f); err != nil {
		c.log.Error("console: page failed", zap.String("page", name), zap.Error(err))
		http.Error(w, "the page could not be rendered; the daemon's log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// fail answers code with a page that says what went wrong.
func (c *console) fail(w http.ResponseWriter, r *http.Request, code int, text string) {
	f := frame{Role: c.role, Title: http.StatusText(code), Staff: web.Staff(r), CSRF: web.CSRFToken(r), Nav: c.nav, Error: text}
	var buf bytes.Buffer
	if err := c.pages["message.html"].ExecuteTemplate(&buf, "layout", f); err != nil {
		http.Error(w, text, code)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// attachment sets the headers of a download named name.
func attachment(w http.ResponseWriter, name, contentType string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Disposition", mimeAttachment(name))
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// mimeAttachment is the Content-Disposition of an attachment named name
// (a safe name: wire.SafeName's).
func mimeAttachment(name string) string {
	return `attachment; filename="` + strings.NewReplacer(`"`, "_", `\`, "_").Replace(name) + `"`
}

// done is the set of messages a redirect after an action may name
// (?done=…): fixed sentences, so that nothing of the query is echoed.
var done = map[string]string{
	"extended":  "The extension is granted and recorded in the audit.",
	"activated": "The version is active and recorded in the audit.",
	"revoked":   "The certificate is revoked, and a new CRL is published.",
	"cancelled": "The student's unused tokens are cancelled.",
}
