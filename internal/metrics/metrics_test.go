package metrics

import (
	"bytes"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"pkiboard/internal/sqlstore"
)

// scrape gathers m's registry, writes it in the text format and parses it
// back, as Prometheus would read it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	out, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatalf("the text format does not parse: %v", err)
	}
	return out
}

// value returns the value of the series of fam whose labels are labels.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestBoardMetrics(t *testing.T) {
	next := time.Unix(1_800_000_000, 0)
	crlKnown := false
	m := New(Board, State{
		CRL: func() (CRL, bool) {
			return CRL{Number: 7, ThisUpdate: next.Add(-time.Hour), NextUpdate: next}, crlKnown
		},
		Certificates: func() map[string]time.Time {
			return map[string]time.Time{"root": next, "board": next.Add(-time.Minute)}
		},
		OpenConns: func() int64 { return 3 },
		MaxConns:  1024,
		Partial:   func() (int, int64, bool) { return 2, 4096, true },
	})
	fams := scrape(t, m)
	if _, ok := fams["pkiboard_crl_number"]; ok {
		t.Error("pkiboard_crl_number present while no CRL is held")
	}
	if v, _ := value(fams, "pkiboard_sessions_total", "outcome", "accepted"); v != 0 {
		t.Errorf("sessions accepted before any: %v", v)
	}
	crlKnown = true
	m.SessionDone(true, 10*time.Millisecond)
	m.SessionDone(true, 10*time.Millisecond)
	m.SessionDone(false, time.Millisecond)
	m.Refused("cert-revoked")
	m.Stored(1000, time.Second)
	m.StoreCommit(sqlstore.Commit{Duration: time.Millisecond, Batch: 4})
	fams = scrape(t, m)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pkiboard_sessions_total", []string{"outcome", "accepted"}, 2},
		{"pkiboard_sessions_total", []string{"outcome", "refused"}, 1},
		{"pkiboard_refusals_total", []string{"code", "cert-revoked"}, 1},
		{"pkiboard_received_bytes_total", nil, 1000},
		{"pkiboard_handshake_duration_seconds", nil, 3},
		{"pkiboard_upload_duration_seconds", nil, 1},
		{"pkiboard_store_commit_duration_seconds", nil, 1},
		{"pkiboard_store_commit_batch_size", nil, 1},
		{"pkiboard_crl_number", nil, 7},
		{"pkiboard_crl_next_update_timestamp_seconds", nil, 1_800_000_000},
		{"pkiboard_crl_this_update_timestamp_seconds", nil, 1_800_000_000 - 3600},
		{"pkiboard_certificate_not_after_timestamp_seconds", []string{"certificate", "root"}, 1_800_000_000},
		{"pkiboard_certificate_not_after_timestamp_seconds", []string{"certificate", "board"}, 1_800_000_000 - 60},
		{"pkiboard_open_connections", nil, 3},
		{"pkiboard_max_connections", nil, 1024},
		{"pkiboard_partial_uploads", nil, 2},
		{"pkiboard_partial_upload_bytes", nil, 4096},
	} {
		if got, ok := value(fams, tc.name, tc.labels...); !ok || got != tc.want {
			t.Errorf("%s%v: got %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing: the Go and process collectors are not registered", name)
		}
	}
	if _, ok := fams["pkiboard_enrollments_total"]; ok {
		t.Error("the board has the CA's pkiboard_enrollments_total")
	}
}

func TestCAMetrics(t *testing.T) {
	m := New(CA, State{MaxConns: 10})
	m.Enrollment("student", true)
	m.Enrollment("board", false)
	m.Enrollment("1155000001", true) // never a label value
	m.SessionDone(true, 0)           // not the CA's: ignored
	fams := scrape(t, m)
	for _, tc := range []struct {
		profile, outcome string
		want             float64
	}{{"student", "issued", 1}, {"student", "refused", 0}, {"board", "issued", 0}, {"board", "refused", 1}} {
		if got, _ := value(fams, "pkiboard_enrollments_total", "profile", tc.profile, "outcome", tc.outcome); got != tc.want {
			t.Errorf("enrollments %s %s: got %v want %v", tc.profile, tc.outcome, got, tc.want)
		}
	}
	var profiles []string
	for _, s := range fams["pkiboard_enrollments_total"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "profile" {
				profiles = append(profiles, l.GetValue())
			}
		}
	}
	sort.Strings(profiles)
	if len(profiles) != 4 {
		t.Errorf("profile label values %v, want only student and board", profiles)
	}
	for _, name := range []string{"pkiboard_sessions_total", "pkiboard_partial_uploads"} {
		if _, ok := fams[name]; ok {
			t.Errorf("the CA has the board's %s", name)
		}
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.SessionDone(true, 0)
	m.Enrollment("student", true)
	m.Refused("x")
	m.Stored(1, 0)
	m.StoreCommit(sqlstore.Commit{})
}
