package console

import (
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/internal/web"
)

// CAOptions is what the CA's console reads and writes.
type CAOptions struct {
	Authority *ca.Authority
	Log       *zap.Logger
	Now       func() time.Time
}

// caConsole serves the CA's pages.
type caConsole struct {
	console
	o CAOptions
}

// CA registers the CA's console pages on m.
func CA(m Mux, o CAOptions) {
	register(m, newCA(o).routes())
}

func newCA(o CAOptions) *caConsole {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &caConsole{o: o, console: console{
		role:  "CA",
		nav:   []link{{Href: "/", Text: "Certificates"}, {Href: "/tokens", Text: "Tokens"}},
		pages: parsePages("ca_certs.html", "ca_cert.html", "ca_revoke.html", "ca_tokens.html", "message.html"),
		log:   o.Log,
		now:   o.Now,
	}}
}

// routes are the CA's pages.
func (c *caConsole) routes() []route {
	return []route{
		styleRoute(),
		{"GET /{$}", c.certificates},
		{"GET /certificates/{serial}", c.certificate},
		{"GET /certificates/{serial}/revoke", c.confirmRevoke},
		{"POST /certificates/{serial}/revoke", c.revoke},
		{"GET /tokens", c.tokens},
		{"POST /tokens/cancel", c.cancelTokens},
	}
}

// cert is a certificate's line.
type cert struct {
	ca.CertView
	Expires string // how long until it expires, or since
	Href    string
}

// certFilter is the query of the certificates page.
type certFilter struct {
	Q      string // part of a SID or a serial
	Status string // "", "valid", "revoked", "expired"
	Sort   string // "serial" (issue order) or "expiry"
}

func (c *caConsole) certificates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := certFilter{Q: strings.TrimSpace(q.Get("q")), Status: q.Get("status"), Sort: q.Get("sort")}
	if len(f.Q) > 255 {
		f.Q = f.Q[:255]
	}
	switch f.Status {
	case string(ca.StatusValid), string(ca.StatusRevoked), string(ca.StatusExpired):
	default:
		f.Status = ""
	}
	if f.Sort != "expiry" {
		f.Sort = "serial"
	}
	recs, err := c.o.Authority.Certificates()
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	now := c.now()
	needle := strings.ToLower(strings.ReplaceAll(f.Q, ":", ""))
	var list []cert
	counts := map[string]int{}
	for _, rec := range recs {
		v := rec.View()
		counts[v.Status]++
		if f.Status != "" && v.Status != f.Status {
			continue
		}
		if needle != "" && !strings.Contains(strings.ToLower(v.SID), needle) && !strings.Contains(v.Serial, needle) {
			continue
		}
		list = append(list, cert{CertView: v, Expires: relative(v.NotAfter, now), Href: "/certificates/" + url.PathEscape(v.Serial)})
	}
	if f.Sort == "expiry" {
		slices.SortStableFunc(list, func(x, y cert) int { return x.NotAfter.Compare(y.NotAfter) })
	}
	c.render(w, r, http.StatusOK, "ca_certs.html", "Certificates", struct {
		Filter certFilter
		List   []cert
		Total  int
		Counts map[string]int
	}{f, list, len(recs), counts}, done[q.Get("done")])
}

// relative says when t is relative to now, for a person.
func relative(t, now time.Time) string {
	d := t.Sub(now).Round(time.Minute)
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("in %d days", d/(24*time.Hour))
	case d > 0:
		return "in " + d.String()
	case d <= -48*time.Hour:
		return fmt.Sprintf("%d days ago", -d/(24*time.Hour))
	default:
		return (-d).String() + " ago"
	}
}

// lookup returns the certificate the path names, or answers 404.
func (c *caConsole) lookup(w http.ResponseWriter, r *http.Request) (ca.CertRecord, *big.Int, bool) {
	serial, ok := new(big.Int).SetString(strings.ReplaceAll(r.PathValue("serial"), ":", ""), 16)
	if !ok || serial.Sign() <= 0 {
		c.fail(w, r, http.StatusNotFound, "That is not a serial number.")
		return ca.CertRecord{}, nil, false
	}
	rec, found, err := c.o.Authority.Certificate(serial)
	switch {
	case err != nil:
		c.fail(w, r, http.StatusInternalServerError, err.Error())
		return ca.CertRecord{}, nil, false
	case !found:
		c.fail(w, r, http.StatusNotFound, "This CA issued no certificate with that serial number.")
		return ca.CertRecord{}, nil, false
	}
	return rec, serial, true
}

// certPage is the data of a certificate's pages.
type certPage struct {
	cert
	Rec     ca.CertRecord
	Renews  string
	ByRenew string
	Reasons []reason
}

type reason struct {
	Code int
	Name string
}

// reasons are the revocation reasons staff choose from.
var reasons = []reason{
	{ca.ReasonUnspecified, "unspecified"},
	{ca.ReasonKeyCompromise, "keyCompromise — the key is lost or stolen"},
	{ca.ReasonAffiliationChanged, "affiliationChanged — the student left the course"},
	{ca.ReasonSuperseded, "superseded"},
	{ca.ReasonCessationOfOperation, "cessationOfOperation"},
	{ca.ReasonPrivilegeWithdrawn, "privilegeWithdrawn"},
}

func (c *caConsole) page(rec ca.CertRecord) certPage {
	v := rec.View()
	p := certPage{cert: cert{CertView: v, Expires: relative(v.NotAfter, c.now()), Href: "/certificates/" + url.PathEscape(v.Serial)},
		Rec: rec, Reasons: reasons}
	if rec.Renews != nil {
		p.Renews = keys.SerialHex(rec.Renews)
	}
	if rec.SupersededBy != nil {
		p.ByRenew = keys.SerialHex(rec.SupersededBy)
	}
	return p
}

func (c *caConsole) certificate(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := c.lookup(w, r)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, "ca_cert.html", "Certificate "+keys.SerialHex(rec.Serial), c.page(rec), done[r.URL.Query().Get("done")])
}

// confirmRevoke is the confirmation step: it names the certificate and
// its student, and asks for the reason; nothing is revoked until its form
// is posted.
func (c *caConsole) confirmRevoke(w http.ResponseWriter, r *http.Request) {
	rec, _, ok := c.lookup(w, r)
	if !ok {
		return
	}
	if rec.Status == ca.StatusRevoked {
		c.fail(w, r, http.StatusConflict, "This certificate is already revoked.")
		return
	}
	c.render(w, r, http.StatusOK, "ca_revoke.html", "Revoke "+keys.SerialHex(rec.Serial), c.page(rec), "")
}

// revoke revokes the certificate (ca.Authority.Revoke: a new CRL at once,
// pushed to the boards watching). The request is recorded in the audit
// before anything is done — a revocation that cannot be recorded is not
// done — and a failure is recorded after.
func (c *caConsole) revoke(w http.ResponseWriter, r *http.Request) {
	rec, serial, ok := c.lookup(w, r)
	if !ok {
		return
	}
	code, err := ca.ParseReason(r.PostFormValue("reason"))
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	hexSerial := keys.SerialHex(serial)
	detail := fmt.Sprintf("serial %s (SID %q), reason %s", hexSerial, rec.SID, ca.ReasonName(code))
	if err := web.Audit(r, "revoke", detail); err != nil {
		c.log.Error("console: revocation not done: the audit cannot record it", zap.Error(err))
		c.fail(w, r, http.StatusInternalServerError, "Nothing was revoked: the audit cannot record it ("+err.Error()+").")
		return
	}
	res, err := c.o.Authority.Revoke(r.Context(), serial, code)
	if err != nil {
		if aerr := web.Audit(r, "revoke.failed", detail+": "+err.Error()); aerr != nil {
			c.log.Error("console: the failed revocation is not in the audit", zap.Error(aerr))
		}
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	c.log.Info("console: certificate revoked", zap.String("serial", hexSerial), zap.String("sid", rec.SID),
		zap.String("staff", staffOf(r)), zap.Uint64("crl", res.CRL.Number), zap.Int("boards_installed", res.CRL.Installed))
	http.Redirect(w, r, "/certificates/"+url.PathEscape(hexSerial)+"?done=revoked", http.StatusSeeOther)
}

// tokenLine is a token's line; the CA never stored a token's secret.
type tokenLine struct {
	ca.TokenView
	Cancel bool // the first unused token of its SID: the line carries the cancel button
}

func (c *caConsole) tokens(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	all := q.Get("all") == "1"
	sid := strings.TrimSpace(q.Get("sid"))
	if len(sid) > 255 {
		sid = sid[:255]
	}
	list, err := c.o.Authority.Tokens(sid, all)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	lines := make([]tokenLine, 0, len(list))
	seen := map[string]bool{}
	for _, t := range list {
		l := tokenLine{TokenView: t}
		if t.State == ca.TokenUnused && t.Profile == "student" && !seen[t.SID] {
			l.Cancel, seen[t.SID] = true, true
		}
		lines = append(lines, l)
	}
	c.render(w, r, http.StatusOK, "ca_tokens.html", "Tokens", struct {
		All  bool
		SID  string
		List []tokenLine
	}{all, sid, lines}, done[q.Get("done")])
}

// cancelTokens cancels a student's unused tokens (ca.Authority.CancelTokens),
// audited first as revoke is.
func (c *caConsole) cancelTokens(w http.ResponseWriter, r *http.Request) {
	sid := strings.TrimSpace(r.PostFormValue("sid"))
	if sid == "" || len(sid) > 255 {
		c.fail(w, r, http.StatusBadRequest, "Name the student whose tokens to cancel.")
		return
	}
	detail := fmt.Sprintf("the unused tokens of SID %q", sid)
	if err := web.Audit(r, "tokens.cancel", detail); err != nil {
		c.log.Error("console: tokens not cancelled: the audit cannot record it", zap.Error(err))
		c.fail(w, r, http.StatusInternalServerError, "Nothing was cancelled: the audit cannot record it ("+err.Error()+").")
		return
	}
	n, err := c.o.Authority.CancelTokens(sid)
	if err != nil {
		if aerr := web.Audit(r, "tokens.cancel.failed", detail+": "+err.Error()); aerr != nil {
			c.log.Error("console: the failed cancel is not in the audit", zap.Error(aerr))
		}
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	c.log.Info("console: tokens cancelled", zap.String("sid", sid), zap.Int("cancelled", n), zap.String("staff", staffOf(r)))
	http.Redirect(w, r, "/tokens?done=cancelled", http.StatusSeeOther)
}
