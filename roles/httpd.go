package roles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/config"
	"pkiboard/internal/metrics"
	"pkiboard/internal/web"
)

// endpoint is a daemon's HTTP endpoint (package web) as runDaemon runs it:
// served as one of the daemon's loops, with the operator command
// console-link. A nil *endpoint is a daemon without one (http_listen = "").
type endpoint struct {
	srv *web.Server
	// serving is set while the daemon's protocol listener accepts
	// (runDaemon): the "listener" readiness check.
	serving atomic.Bool
}

// newEndpoint binds the daemon's HTTP endpoint as h configures it, with the
// metrics of m and the daemon's readiness checks (the listener's is added
// here); nil when h.HTTPListen is "". console, if set, registers the staff
// console's pages on it.
func newEndpoint(role string, h config.HTTP, log *zap.Logger, m *metrics.Metrics, audit func(actor, action, detail string) error, checks []web.Check) (*endpoint, error) {
	if h.HTTPListen == "" {
		return nil, nil
	}
	ep := &endpoint{}
	checks = append(checks, web.Check{Name: "listener", Check: func(context.Context) error {
		if !ep.serving.Load() {
			return errors.New("the daemon's protocol listener is not accepting")
		}
		return nil
	}})
	srv, err := web.New(web.Options{
		Listen:   h.HTTPListen,
		TLSCert:  h.HTTPTLSCert,
		TLSKey:   h.HTTPTLSKey,
		Log:      log.Named("http"),
		Audit:    audit,
		Ready:    checks,
		Registry: m.Registry,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: http_listen: %w", role, err)
	}
	ep.srv = srv
	return ep, nil
}

// ConsoleLinkArgs are the arguments of the console-link operator command.
type ConsoleLinkArgs struct {
	Name string `json:"name"`
}

// ConsoleLink is the console-link operator command's answer.
type ConsoleLink struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// linkOp is the console-link operator command of a daemon with an endpoint.
func (ep *endpoint) linkOp(_ context.Context, raw json.RawMessage) (any, error) {
	var args ConsoleLinkArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, err
	}
	url, expires, err := ep.srv.NewLoginLink(args.Name)
	if err != nil {
		return nil, err
	}
	return ConsoleLink{URL: url, Expires: expires}, nil
}

// RequestConsoleLink asks the running daemon of role for a one-time login
// link to its console for name, and prints it with its expiry.
func RequestConsoleLink(ctx context.Context, cfg *config.Config, role, name string, w io.Writer) error {
	var dir, listen string
	switch role {
	case "ca":
		dir, listen = cfg.CA.DataDir, cfg.CA.HTTPListen
	case "board":
		dir, listen = cfg.Board.DataDir, cfg.Board.HTTPListen
	default:
		return fmt.Errorf("console-link: say which daemon, --role ca or --role board (not %q)", role)
	}
	if err := web.CheckName(name); err != nil {
		return fmt.Errorf("console-link: %w", err)
	}
	var link ConsoleLink
	err := callAdmin(ctx, dir, "console-link", ConsoleLinkArgs{Name: name}, &link, func() (map[string]adminOp, func() error, error) {
		return nil, nil, notRunning(role, dir)
	})
	if err != nil {
		if listen == "" {
			return fmt.Errorf("console-link: %w (%s.http_listen is empty: the %s serves no console)", err, role, role)
		}
		return fmt.Errorf("console-link: %w", err)
	}
	fmt.Fprintf(w, "%s\nvalid once, for %s, until %s\n", link.URL, name, link.Expires.Local().Format(time.RFC3339))
	return nil
}

// liveConns reads the open connections of a daemon's server once runDaemon
// has made it: the pkiboard_open_connections gauge.
type liveConns struct{ p atomic.Pointer[connStats] }

func (l *liveConns) open() int64 {
	if s := l.p.Load(); s != nil {
		return s.open.Load()
	}
	return 0
}

// close closes the endpoint of a daemon that stops before runDaemon serves it.
func (ep *endpoint) close() {
	if ep != nil {
		ep.srv.Close()
	}
}
