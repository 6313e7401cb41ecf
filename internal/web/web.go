// Package web is the HTTP endpoint of a pkiboard daemon: the open routes an
// operator's monitoring reads (/metrics, /healthz, /readyz) and the door of the
// staff console — one-time login links, sessions, CSRF tokens and the security
// headers every page carries.
//
// It is not the console itself: the pages are registered with Handle by the
// console package, and they reach the staff's name, the form's CSRF token and
// the audit through Staff, CSRFToken and Audit. It is not a place for policy
// about who may be staff either: whoever can ask the daemon's operator socket
// for a login link (pkiboard console-link) is.
//
// The listener is loopback unless the daemon has a TLS certificate and key:
// staff reach a board or a CA through an SSH tunnel, and a console on a
// network address without TLS would send its cookie in clear.
package web

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Timeouts and sizes of the HTTP server. Every read and write has a deadline:
// a peer that sends slowly or reads slowly costs a connection for a bounded
// time.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 16 << 10
	// MaxBodyBytes bounds the body of a console request (a form).
	MaxBodyBytes = 1 << 20
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// once its context ends.
	ShutdownTimeout = 5 * time.Second
	// CheckTimeout bounds each readiness check.
	CheckTimeout = 2 * time.Second
)

// A Check is one readiness condition of a daemon: /readyz answers 200 when
// every check returns nil, 503 naming each that does not and why.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Options configures a Server.
type Options struct {
	// Listen is the host:port to bind ("127.0.0.1:0" in tests). A host that
	// is not loopback needs TLSCert and TLSKey (CheckListen).
	Listen string
	// TLSCert and TLSKey are PEM files; both or neither.
	TLSCert, TLSKey string
	// BaseURL, if set, is the scheme://host[:port] that login links name;
	// by default the listener's own address.
	BaseURL string

	Log *zap.Logger
	// Now is the clock of login links and sessions; time.Now if nil.
	Now func() time.Time
	// Audit records a staff action; the console's actions and logins fail
	// when it is nil or fails, so that nothing a staff member does goes
	// unrecorded.
	Audit func(actor, action, detail string) error
	// Ready lists the daemon's readiness checks, in the order /readyz reports
	// them.
	Ready []Check
	// Registry is what /metrics exposes; an empty registry if nil.
	Registry *prometheus.Registry
	// SessionTTL is how long a console session lasts from its login;
	// DefaultSessionTTL if zero.
	SessionTTL time.Duration
}

// Lifetimes of what the door hands out.
const (
	// LinkTTL is how long a login link may wait to be used.
	LinkTTL = 10 * time.Minute
	// DefaultSessionTTL is how long a session lasts from its login.
	DefaultSessionTTL = 8 * time.Hour
)

// Server is a daemon's HTTP endpoint. Its methods are safe for concurrent use.
type Server struct {
	log      *zap.Logger
	now      func() time.Time
	audit    func(actor, action, detail string) error
	ready    []Check
	ttl      time.Duration
	baseURL  string
	tls      bool
	ln       net.Listener
	srv      *http.Server
	mux      *http.ServeMux
	doorMu   sync.Mutex
	links    secrets[link]
	sessions secrets[*session]

	closeOnce sync.Once
}

// New checks o, binds the listener and returns a Server ready to Serve.
func New(o Options) (*Server, error) {
	if err := CheckListen(o.Listen, o.TLSCert, o.TLSKey); err != nil {
		return nil, err
	}
	s := &Server{
		log:   o.Log,
		now:   o.Now,
		audit: o.Audit,
		ready: o.Ready,
		ttl:   o.SessionTTL,
		mux:   http.NewServeMux(),
		links: secrets[link]{max: maxLinks},
		// A full session table drops its oldest session (newSession).
		sessions: secrets[*session]{max: maxSessions},
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ttl <= 0 {
		s.ttl = DefaultSessionTTL
	}
	var tlsConf *tls.Config
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("web: tls certificate: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.tls = true
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            zap.NewStdLog(s.log),
		ErrorHandling:       promhttp.ContinueOnError,
		Timeout:             WriteTimeout / 2,
		MaxRequestsInFlight: 4,
	}))
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.Handle("POST /logout", s.console(http.HandlerFunc(s.logout)))

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	s.ln = ln
	s.baseURL = o.BaseURL
	if s.baseURL == "" {
		scheme := "http"
		if s.tls {
			scheme = "https"
		}
		s.baseURL = scheme + "://" + linkHost(ln.Addr())
	}
	s.srv = &http.Server{
		Handler:           headers(s.mux),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	return s, nil
}

// linkHost is the host:port a login link names for a listener bound at a:
// an unspecified address (all interfaces) becomes loopback, which a link
// opened on the daemon's machine or through an SSH tunnel reaches.
func linkHost(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if ta.IP != nil && ta.IP.To4() == nil {
			ip = net.IPv6loopback
		}
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}

// CheckListen reports whether the endpoint may listen at addr with the given
// TLS files: both or neither of cert and key, and a host that is not
// loopback only with both. Config validation and New both call it.
func CheckListen(addr, cert, key string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("web: listen address %q: %w", addr, err)
	}
	if (cert == "") != (key == "") {
		return errors.New("web: set both the TLS certificate and its key, or neither")
	}
	if cert == "" && !isLoopback(host) {
		return fmt.Errorf("web: %q is not a loopback address, and without a TLS certificate and key the console's cookie and the metrics would cross the network in clear; listen on 127.0.0.1 and reach it through an SSH tunnel, or set the TLS certificate and key", addr)
	}
	return nil
}

// isLoopback reports whether host names only this machine: "localhost" or a
// loopback IP literal. An empty host means every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr is the address the endpoint listens at.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Handle registers a console page at pattern (http.ServeMux syntax): it
// answers only requests of an open session, and a POST, PUT, PATCH or
// DELETE only with the session's CSRF token. Patterns must not overlap the
// open routes (GET /metrics, /healthz, /readyz, /login; POST /login,
// /logout).
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.console(h))
}

// Serve serves until ctx ends, then shuts down, waiting at most
// ShutdownTimeout for requests in flight. It returns nil after a shutdown
// that ctx asked for.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("web: %w", err)
	case <-ctx.Done():
	}
	// Shutdown gets its own deadline: ctx is already done.
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	<-errc
	if err != nil {
		s.srv.Close()
		return fmt.Errorf("web: shutdown: %w", err)
	}
	return nil
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.srv.Close()
		if e := s.ln.Close(); err == nil && e != nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	})
	return err
}

// healthz answers that the process serves HTTP: liveness, nothing more.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// checkResult is one check's line in /readyz's answer.
type checkResult struct {
	Name   string `json:"name"`
	Status string `json:"status"` // "ok" or "failing"
	Error  string `json:"error,omitempty"`
}

// readyz runs every readiness check (each within CheckTimeout) and answers
// 200 if all pass, 503 otherwise, with each check's result.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	results := make([]checkResult, len(s.ready))
	var wg sync.WaitGroup
	for i, c := range s.ready {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
			defer cancel()
			results[i] = checkResult{Name: c.Name, Status: "ok"}
			if err := runCheck(ctx, c.Check); err != nil {
				results[i].Status, results[i].Error = "failing", err.Error()
			}
		}()
	}
	wg.Wait()
	code, status := http.StatusOK, "ok"
	var failed []string
	for _, res := range results {
		if res.Status != "ok" {
			failed = append(failed, res.Name)
		}
	}
	if len(failed) > 0 {
		code, status = http.StatusServiceUnavailable, "failing"
		s.log.Debug("not ready", zap.Strings("failed", failed))
	}
	writeJSON(w, code, struct {
		Status string        `json:"status"`
		Failed []string      `json:"failed,omitempty"`
		Checks []checkResult `json:"checks"`
	}{status, failed, results})
}

// runCheck runs check, and fails it if it outlives ctx or panics.
func runCheck(ctx context.Context, check func(context.Context) error) (err error) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- check(ctx)
	}()
	select {
	case err = <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %s", CheckTimeout)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
