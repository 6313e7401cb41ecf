package roles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/wire"
)

// An adminOp is one operator command as a daemon runs it: JSON arguments in, a
// JSON-encodable result out. The same function serves the admin socket and,
// when no daemon runs, the operator command itself.
type adminOp func(ctx context.Context, args json.RawMessage) (any, error)

// adminServer serves operator commands on a daemon's Unix socket (PROTOCOL.md
// §7). Only the daemon's user and root may use it: the socket is created with
// mode 0600 (listenAdmin) in a data directory of mode 0700 that the daemon's
// user owns (checkDataDir), and each connecting process's uid is checked
// (peerUID) before anything is read from it.
type adminServer struct {
	log *zap.Logger
	ops map[string]adminOp
	// allow says whether a process of uid may use the socket; the daemon's
	// own uid and root if nil.
	allow func(uid uint32) bool

	refusedLog everySecond // refused peers, logged at most once a second
}

// ownUIDOrRoot is adminServer's default allow.
func ownUIDOrRoot(uid uint32) bool { return uid == 0 || uid == uint32(os.Getuid()) }

// adminTimeout bounds one operator request on the socket.
const adminTimeout = 30 * time.Second

// serve accepts operator connections until ctx is cancelled.
func (s *adminServer) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("admin socket: %w", err)
		}
		if !s.allowed(c) {
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			// A shutdown closes the connection, so that an operator client
			// that connected and went quiet does not hold the daemon up.
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			s.handle(ctx, c)
		}()
	}
}

// allowed reports whether the process at the other end of c may use the
// socket, and logs (at most once a second) the ones that may not.
func (s *adminServer) allowed(c net.Conn) bool {
	allow := s.allow
	if allow == nil {
		allow = ownUIDOrRoot
	}
	uid, err := peerUID(c)
	if err == nil && allow(uid) {
		return true
	}
	if n, in, ok := s.refusedLog.note(time.Now()); ok {
		fields := []zap.Field{zap.Int("refused", n), zap.Duration("in", in), zap.Int("daemon_uid", os.Getuid())}
		if err != nil {
			fields = append(fields, zap.Error(err))
		} else {
			fields = append(fields, zap.Uint32("uid", uid))
		}
		s.log.Warn("operator socket: refused a process of another user (only the daemon's user and root may use it)", fields...)
	}
	return false
}

func (s *adminServer) handle(ctx context.Context, c net.Conn) {
	wc := wire.NewConn(c, wire.Options{MaxFrame: wire.MaxAdminFrame, ReadTimeout: adminTimeout, WriteTimeout: adminTimeout})
	req, err := wire.Expect[*wire.AdminRequest](wc.ReadMessage())
	if err != nil {
		wire.Answer(wc, err) //nolint:errcheck // closing
		return
	}
	op, ok := s.ops[req.Command]
	if !ok {
		wire.Answer(wc, wire.Refusef(wire.CodeNotFound, "this daemon has no operator command %q", req.Command)) //nolint:errcheck // closing
		return
	}
	res, err := op(ctx, req.Args)
	if err != nil {
		s.log.Info("operator command failed", zap.String("command", req.Command), zap.Error(err))
		// The operator is local and may see the whole error, unlike a peer.
		wc.WriteMessage(&wire.Error{Code: wire.CodeOf(err), Text: err.Error()}) //nolint:errcheck // closing
		return
	}
	s.log.Info("operator command", zap.String("command", req.Command))
	out, err := json.Marshal(res)
	if err != nil {
		wire.Answer(wc, err) //nolint:errcheck // closing
		return
	}
	wc.WriteMessage(&wire.AdminResponse{Result: out}) //nolint:errcheck // the operator sees a closed connection
}

// callAdmin runs an operator command: through the daemon's socket in dataDir
// when a daemon is running, otherwise by calling local, which opens the data
// directory itself and returns the ops and a function to close it. The result is
// decoded into out.
func callAdmin(ctx context.Context, dataDir, command string, args any, out any,
	local func() (map[string]adminOp, func() error, error)) error {
	in, err := json.Marshal(args)
	if err != nil {
		return err
	}
	var result []byte
	path := filepath.Join(dataDir, adminSocketName)
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	switch {
	case err == nil:
		defer c.Close()
		wc := wire.NewConn(c, wire.Options{MaxFrame: wire.MaxAdminFrame, ReadTimeout: adminTimeout, WriteTimeout: adminTimeout})
		if err := wc.WriteMessage(&wire.AdminRequest{Command: command, Args: in}); err != nil {
			return fmt.Errorf("talk to the daemon at %s: %w", path, err)
		}
		resp, err := wire.Expect[*wire.AdminResponse](wc.ReadMessage())
		if err != nil {
			var werr *wire.Error
			if errors.As(err, &werr) {
				return errors.New(werr.Text)
			}
			return fmt.Errorf("talk to the daemon at %s: %w", path, err)
		}
		result = resp.Result
	case isStaleSocket(err):
		ops, closeFn, err := local()
		if err != nil {
			return err
		}
		op, ok := ops[command]
		if !ok {
			closeFn() //nolint:errcheck // nothing was done
			return fmt.Errorf("%q needs the daemon running (no daemon answers on %s)", command, path)
		}
		res, err := op(ctx, in)
		if cerr := closeFn(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if result, err = json.Marshal(res); err != nil {
			return err
		}
	default:
		return fmt.Errorf("reach the daemon at %s: %w", path, err)
	}
	return json.Unmarshal(result, out)
}

// adminSocketName is the operator socket's file name in a daemon's data dir.
const adminSocketName = "admin.sock"

// listenAdmin opens the operator socket in dataDir (which checkDataDir has
// checked), with mode 0600 from the moment it exists (listenPrivate). A stale
// socket from a crashed daemon is replaced; one a running daemon answers on
// is not.
func listenAdmin(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, adminSocketName)
	if len(path) > 100 {
		return nil, fmt.Errorf("admin socket: path %s is too long for a Unix socket (%d bytes; at most 100): use a shorter data_dir", path, len(path))
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket: a daemon already answers on %s: another daemon runs with this data directory; stop it, or give this one another data_dir", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}

// isStaleSocket reports whether err from dialing the admin socket means no
// daemon is there.
func isStaleSocket(err error) bool {
	return errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "connection refused")
}
