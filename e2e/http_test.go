package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"pkiboard/internal/proc"
)

// httpAddr waits for d's "HTTP endpoint up" line and returns its address.
func httpAddr(t *testing.T, d *daemon) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := d.WaitFor(ctx, 0, 20*time.Second, func(r proc.Record) bool { return r.Str("http_addr") != "" })
	if r == nil {
		t.Fatalf("%s logged no http_addr", d.Name)
	}
	return r.Str("http_addr")
}

func httpGet(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrapeMetrics reads /metrics at addr and parses it as Prometheus does.
func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, http.DefaultClient, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// metricValue is the counter or gauge (or histogram's count) of name whose
// labels include labels (name, value, …); -1 if absent.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
next:
	for _, m := range fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

var linkLine = regexp.MustCompile(`(?m)^(http://127\.0\.0\.1:\d+/login\?t=[A-Za-z0-9_-]{43})$`)

// TestHTTPEndpoints runs a CA and a board with their HTTP endpoints: the
// metrics parse and move as sessions, enrollments and refusals happen, the
// health and readiness answer, and a console link from console-link logs
// in once.
func TestHTTPEndpoints(t *testing.T) {
	s := startSystem(t, nil)
	caHTTP, boardHTTP := httpAddr(t, s.ca), httpAddr(t, s.board)

	for _, addr := range []string{caHTTP, boardHTTP} {
		if code, body := httpGet(t, http.DefaultClient, "http://"+addr+"/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
			t.Errorf("%s/healthz: %d %s", addr, code, body)
		}
		code, body := httpGet(t, http.DefaultClient, "http://"+addr+"/readyz")
		var ready struct{ Status string }
		json.Unmarshal([]byte(body), &ready)
		if code != 200 || ready.Status != "ok" {
			t.Errorf("%s/readyz: %d %s", addr, code, body)
		}
	}

	before := scrapeMetrics(t, boardHTTP)
	if v := metricValue(before, "pkiboard_certificate_not_after_timestamp_seconds", "certificate", "board"); v <= float64(time.Now().Unix()) {
		t.Errorf("board certificate notAfter %v: not in the future", v)
	}
	if v := metricValue(before, "pkiboard_crl_number"); v < 1 {
		t.Errorf("board pkiboard_crl_number %v, want ≥ 1", v)
	}
	ids := s.path("ids")
	for _, sid := range []string{"1155000001", "1155000002"} {
		if r := s.student(nil, "--ids", sid, "--data-dir", ids); r.code != 0 {
			t.Fatalf("%s: exit %d\n%s", sid, r.code, r.stderr)
		}
	}
	s.mustRun(nil, "revoke", "--sid", "1155000002", "--reason", "keyCompromise")
	if r := s.student(nil, "--ids", "1155000002", "--data-dir", ids); r.code == 0 {
		t.Fatalf("a revoked student's session was accepted")
	}
	after := scrapeMetrics(t, boardHTTP)
	for _, tc := range []struct {
		name   string
		labels []string
		diff   float64
	}{
		{"pkiboard_sessions_total", []string{"outcome", "accepted"}, 2},
		{"pkiboard_sessions_total", []string{"outcome", "refused"}, 1},
		{"pkiboard_refusals_total", []string{"code", "cert-revoked"}, 1},
		{"pkiboard_upload_duration_seconds", nil, 2},
	} {
		was := max(metricValue(before, tc.name, tc.labels...), 0)
		if got := metricValue(after, tc.name, tc.labels...) - was; got != tc.diff {
			t.Errorf("board %s%v moved by %v, want %v", tc.name, tc.labels, got, tc.diff)
		}
	}
	if v := metricValue(after, "pkiboard_received_bytes_total"); v <= 0 {
		t.Errorf("pkiboard_received_bytes_total %v, want > 0", v)
	}
	if v := metricValue(after, "pkiboard_store_commit_batch_size"); v < 2 {
		t.Errorf("board commits observed: %v, want ≥ 2", v)
	}
	caM := scrapeMetrics(t, caHTTP)
	if v := metricValue(caM, "pkiboard_enrollments_total", "profile", "student", "outcome", "issued"); v != 2 {
		t.Errorf("CA student enrollments issued: %v want 2", v)
	}
	if v := metricValue(caM, "pkiboard_enrollments_total", "profile", "board", "outcome", "issued"); v != 1 {
		t.Errorf("CA board enrollments issued: %v want 1", v)
	}
	if _, ok := caM["go_goroutines"]; !ok {
		t.Error("CA /metrics lacks the Go collector")
	}

	// The console's door: 401 without a session; a link logs in once.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r := s.mustRun(nil, "console-link", "--role", "board", "--as", "alice")
	m := linkLine.FindStringSubmatch(r.stdout)
	if m == nil || !strings.Contains(m[1], boardHTTP) {
		t.Fatalf("console-link printed %q, want a link to %s", r.stdout, boardHTTP)
	}
	u, _ := url.Parse(m[1])
	form := url.Values{"t": {u.Query().Get("t")}}
	resp, err := c.PostForm("http://"+boardHTTP+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("login: %s, want 303", resp.Status)
	}
	resp, err = http.PostForm("http://"+boardHTTP+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("second use of the link: %s, want 401", resp.Status)
	}
	if r := s.run(nil, "console-link", "--role", "ca", "--as", "bob"); r.code != 0 || !linkLine.MatchString(r.stdout) {
		t.Errorf("console-link --role ca: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}
