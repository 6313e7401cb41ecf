// Package metrics holds the Prometheus metrics of pkiboard's daemons, each
// on a registry of its own, and the small methods the roles call as
// sessions, enrollments and refusals happen.
//
// The names and labels are shared with the alert rules of deploy/ and must
// not change lightly. No label carries a SID, a name or anything else
// personal: a label's values are a short fixed list (outcomes, profiles,
// protocol code names, certificate roles).
//
// Gauges of the daemon's state (its CRL, its certificates, its connections,
// the interrupted uploads) are read at scrape time from the functions in
// State, so that they are never out of date. The package knows nothing of
// what a CRL or a session is beyond those numbers.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"pkiboard/internal/sqlstore"
)

// Role selects which metrics a daemon has.
type Role int

// The daemons.
const (
	CA Role = iota + 1
	Board
)

// CRL is what the gauges tell of a CRL.
type CRL struct {
	Number     float64
	ThisUpdate time.Time
	NextUpdate time.Time
}

// State is what the scrape-time gauges read. Any function may be nil, and
// may report false when it knows nothing (no CRL held yet, say): its gauges
// are then absent from the scrape.
type State struct {
	CRL func() (CRL, bool)
	// Certificates returns the notAfter of the daemon's certificates by
	// role: "root" (both daemons) and "board" (the board).
	Certificates func() map[string]time.Time
	OpenConns    func() int64
	MaxConns     int
	// Partial returns the board's interrupted uploads and their bytes.
	Partial func() (uploads int, bytes int64, ok bool)
}

// Metrics is one daemon's metrics. A nil *Metrics is valid and counts
// nothing, so that code paths without an endpoint need no checks.
type Metrics struct {
	// Registry holds every metric of the daemon, the Go and process
	// collectors included; /metrics exposes it.
	Registry *prometheus.Registry

	sessions    *prometheus.CounterVec
	enrollments *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	received    prometheus.Counter
	handshake   prometheus.Histogram
	upload      prometheus.Histogram
	commitTime  prometheus.Histogram
	commitBatch prometheus.Histogram
}

// New returns the metrics of role, registered on a fresh registry.
func New(role Role, st State) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{Registry: reg}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkiboard_refusals_total",
		Help: "Refusals the daemon answered, by the PROTOCOL.md code name.",
	}, []string{"code"})
	m.commitTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pkiboard_store_commit_duration_seconds",
		Help:    "Time from BEGIN to the return of COMMIT of each write transaction of the daemon's database (group commit: one transaction serves a batch of writes).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms … 4 s
	})
	m.commitBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pkiboard_store_commit_batch_size",
		Help:    "Writes served by each write transaction of the daemon's database.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	})
	reg.MustRegister(m.refusals, m.commitTime, m.commitBatch)

	switch role {
	case Board:
		m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pkiboard_sessions_total",
			Help: "Student sessions, by the handshake's outcome.",
		}, []string{"outcome"})
		m.received = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pkiboard_received_bytes_total",
			Help: "Content bytes of the submissions stored.",
		})
		m.handshake = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pkiboard_handshake_duration_seconds",
			Help:    "Time from a connection's start to the end of its handshake, established or refused.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1 ms … 16 s
		})
		m.upload = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pkiboard_upload_duration_seconds",
			Help:    "Time from a submission's request to its commit.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16), // 10 ms … 5 min
		})
		reg.MustRegister(m.sessions, m.received, m.handshake, m.upload)
		for _, o := range []string{"accepted", "refused"} {
			m.sessions.WithLabelValues(o)
		}
	case CA:
		m.enrollments = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pkiboard_enrollments_total",
			Help: "Enrollments (and renewals) the CA answered, by certificate profile and outcome.",
		}, []string{"profile", "outcome"})
		reg.MustRegister(m.enrollments)
		for _, p := range []string{"student", "board"} {
			for _, o := range []string{"issued", "refused"} {
				m.enrollments.WithLabelValues(p, o)
			}
		}
	}
	reg.MustRegister(&stateCollector{role: role, st: st})
	return m
}

// SessionDone counts a board session whose handshake ended: accepted or
// refused.
func (m *Metrics) SessionDone(accepted bool, took time.Duration) {
	if m == nil || m.sessions == nil {
		return
	}
	outcome := "refused"
	if accepted {
		outcome = "accepted"
	}
	m.sessions.WithLabelValues(outcome).Inc()
	m.handshake.Observe(took.Seconds())
}

// Enrollment counts an enrollment the CA answered; profile is "student" or
// "board" (other values are not counted).
func (m *Metrics) Enrollment(profile string, issued bool) {
	if m == nil || m.enrollments == nil || (profile != "student" && profile != "board") {
		return
	}
	outcome := "refused"
	if issued {
		outcome = "issued"
	}
	m.enrollments.WithLabelValues(profile, outcome).Inc()
}

// Refused counts a refusal by its code name (wire.Code's String).
func (m *Metrics) Refused(code string) {
	if m == nil || code == "" {
		return
	}
	m.refusals.WithLabelValues(code).Inc()
}

// Stored counts a submission stored: its content bytes and the time from
// its request to its commit.
func (m *Metrics) Stored(bytes int64, took time.Duration) {
	if m == nil || m.received == nil {
		return
	}
	m.received.Add(float64(bytes))
	m.upload.Observe(took.Seconds())
}

// StoreCommit is a sqlstore observer (sqlstore.DB.Observe).
func (m *Metrics) StoreCommit(c sqlstore.Commit) {
	if m == nil {
		return
	}
	m.commitTime.Observe(c.Duration.Seconds())
	m.commitBatch.Observe(float64(c.Batch))
}

// stateCollector reads the daemon's state at scrape time.
type stateCollector struct {
	role Role
	st   State
}

var (
	descCRLNumber = prometheus.NewDesc("pkiboard_crl_number",
		"Number of the CRL the daemon serves (the CA) or holds (the board).", nil, nil)
	descCRLNext = prometheus.NewDesc("pkiboard_crl_next_update_timestamp_seconds",
		"nextUpdate of that CRL, Unix seconds.", nil, nil)
	descCRLThis = prometheus.NewDesc("pkiboard_crl_this_update_timestamp_seconds",
		"thisUpdate of that CRL, Unix seconds.", nil, nil)
	descNotAfter = prometheus.NewDesc("pkiboard_certificate_not_after_timestamp_seconds",
		"notAfter of the daemon's certificates, Unix seconds.", []string{"certificate"}, nil)
	descOpen = prometheus.NewDesc("pkiboard_open_connections",
		"Protocol connections being served now.", nil, nil)
	descMax = prometheus.NewDesc("pkiboard_max_connections",
		"The daemon's max_conns.", nil, nil)
	descPartial = prometheus.NewDesc("pkiboard_partial_uploads",
		"Interrupted uploads kept for resuming.", nil, nil)
	descPartialBytes = prometheus.NewDesc("pkiboard_partial_upload_bytes",
		"Bytes on disk of the interrupted uploads kept.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCRLNumber, descCRLNext, descCRLThis, descNotAfter, descOpen, descMax} {
		ch <- d
	}
	if c.role == Board {
		ch <- descPartial
		ch <- descPartialBytes
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.st
	if st.CRL != nil {
		if crl, ok := st.CRL(); ok {
			gauge(descCRLNumber, crl.Number)
			gauge(descCRLNext, unix(crl.NextUpdate))
			gauge(descCRLThis, unix(crl.ThisUpdate))
		}
	}
	if st.Certificates != nil {
		for name, t := range st.Certificates() {
			gauge(descNotAfter, unix(t), name)
		}
	}
	if st.OpenConns != nil {
		gauge(descOpen, float64(st.OpenConns()))
	}
	if st.MaxConns > 0 {
		gauge(descMax, float64(st.MaxConns))
	}
	if c.role == Board && st.Partial != nil {
		if n, b, ok := st.Partial(); ok {
			gauge(descPartial, float64(n))
			gauge(descPartialBytes, float64(b))
		}
	}
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
