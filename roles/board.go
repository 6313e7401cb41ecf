package roles

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/internal/logging"
	"pkiboard/internal/metrics"
	"pkiboard/internal/web"
	"pkiboard/session"
	"pkiboard/wire"
)

// RunBoard runs the submission board until ctx is cancelled: it binds
// board.listen and its admin socket first, then settles its identity (root of
// trust, its own certificate from the CA), keeps the CA's CRL fresh, accepts
// student sessions and operator commands, stores each submission durably and
// answers with a signed receipt.
func RunBoard(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	b := &cfg.Board
	if err := checkDataDir("board", "board.data_dir", b.DataDir); err != nil {
		return err
	}
	// An invalid assignments file stops the board before it serves: the
	// error names the line and what to fix.
	assignments, err := courseSource(b, log)
	if err != nil {
		return err
	}
	// Bind first: a board that cannot serve enrolls nothing.
	ls, err := listen("board", b.Listen, b.DataDir)
	if err != nil {
		return err
	}
	defer ls.close()
	st, err := board.Open(b.DataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	if n, err := st.RemoveOrphans(); err != nil {
		return err
	} else if n > 0 {
		log.Info("removed content files a crash left unindexed", zap.Int("files", n))
	}
	expire := partialExpiry(st, b.PartialTTL.D(), log)
	if err := expire(); err != nil {
		return err
	}

	id, err := boardIdentity(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("board: %w", err)
	}
	crls := board.NewCRLKeeper(board.CRLOptions{
		CAAddr:      b.CAAddr,
		Path:        filepath.Join(b.DataDir, "crl.pem"),
		Root:        id.root,
		AcceptStale: b.CRLStale == "warn",
		Refresh:     b.CRLRefresh.D(),
		Log:         log,
	})
	if err := crls.Load(); err != nil {
		log.Warn("ignoring the saved CRL", zap.Error(err))
	}
	if err := crls.Fetch(ctx); err != nil {
		log.Warn("could not fetch the CRL from the CA; will retry", zap.Error(err), zap.Duration("every", b.CRLRefresh.D()))
	}
	// The watch: the CA pushes each new CRL, and the board's status, at once.
	// The board waits (a little) for its first status before it serves, so
	// that its first sessions have one to show.
	watcher := board.NewWatcher(board.WatchOptions{
		CAAddr:   b.CAAddr,
		Root:     id.root,
		Identity: id.current, // the renewed certificate from a renewal on
		CRLs:     crls,
		Path:     filepath.Join(b.DataDir, board.StatusFile),
		Log:      log,
	})
	if err := watcher.Load(); err != nil {
		log.Warn("ignoring the saved status", zap.Error(err))
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		watcher.Run(watchCtx)
	}()
	defer func() {
		stopWatch()
		<-watching
	}()
	select {
	case <-watcher.Settled():
	case <-ctx.Done():
	case <-time.After(b.HandshakeTimeout.D()):
	}
	if watcher.Status() == nil {
		log.Warn("no status from the CA yet; serving, and watching on", zap.String("ca", b.CAAddr))
	}
	if b.AllowRC4 {
		log.Warn("board.allow_rc4 = true: students may choose rc4-hmac-sha256. RC4 is broken (RFC 7465); allow it only for teaching")
	}
	live := &liveConns{}
	m := metrics.New(metrics.Board, metrics.State{
		CRL: func() (metrics.CRL, bool) {
			crl := crls.Current()
			if crl == nil {
				return metrics.CRL{}, false
			}
			n, _ := crl.Number.Float64()
			return metrics.CRL{Number: n, ThisUpdate: crl.ThisUpdate, NextUpdate: crl.NextUpdate}, true
		},
		Certificates: func() map[string]time.Time {
			return map[string]time.Time{"root": id.root.NotAfter, "board": id.renewer.Current().Certificate.NotAfter}
		},
		OpenConns: live.open,
		MaxConns:  b.MaxConns,
		Partial: func() (int, int64, bool) {
			u, err := st.PartialUsage()
			return u.Uploads, u.Bytes, err == nil
		},
	})
	st.DB().Observe(m.StoreCommit)
	ep, err := newEndpoint("board", b.HTTP, log, m, st.AuditConsole, []web.Check{
		{Name: "store", Check: st.DB().CheckWritable},
		{Name: "crl", Check: func(context.Context) error { return crls.CheckFresh() }},
		{Name: "certificate", Check: func(context.Context) error {
			return certificateValid(id.renewer.Current().Certificate, time.Now())
		}},
	})
	if err != nil {
		return err
	}
	defer ep.close()
	ep.boardConsole(cfg, st, assignments, id.root, crls.Current, log)
	h := &boardHandler{
		metrics:    m,
		store:      st,
		limits:     b.Limits,
		uploads:    board.UploadLimits{MaxSize: int64(b.MaxSubmission), PartialQuota: int64(b.PartialQuota)},
		log:        log,
		logContent: b.LogContent,
	}
	// Without an assignments file the board serves the lab's implicit
	// assignment (PROTOCOL.md §5.4).
	h.course = &board.Lab{Store: st, MaxSize: int64(b.MaxSubmission)}
	if assignments != nil {
		h.course = board.NewCourse(st, assignments)
	}
	current := id.renewer.Current()
	h.session.Store(&session.ServerConfig{
		Certificate:  current.Certificate,
		Key:          current.Key,
		Root:         id.root,
		Status:       watcher.Status, // PROTOCOL.md §4.4: stapled to every ServerHello
		CheckRevoked: crls.Check,
		HelloWindow:  b.HelloWindow.D(),
		Replays:      session.NewReplayCache(0),
		AllowRC4:     b.AllowRC4,
	})
	id.renewer.OnRenewed = func(next *ca.Identity) {
		// Sessions that start from now on use the new certificate and key;
		// the old certificate is revoked as superseded, and the watch moves
		// to the new one at once (its status must name it).
		c := *h.session.Load()
		c.Certificate, c.Key = next.Certificate, next.Key
		h.session.Store(&c)
		watcher.Restart()
		logBoardCertificate(log, next)
	}
	return runDaemon(ctx, log, ls, daemon{
		name: "board", role: "board", limits: b.Limits,
		handle: h.handle, ops: boardOps(b, st), // its listings read board.db directly
		fields: []zap.Field{zap.String("name", b.Name), zap.Stringer("store_check", st.Checked())},
		http:   ep, conns: live,
		loops: []func(context.Context){crls.Run, id.renewer.Run, every(min(time.Hour, b.PartialTTL.D()/2), func() {
			if err := expire(); err != nil {
				log.Warn("could not remove the expired interrupted uploads; will try again", zap.Error(err))
			}
		})},
		stats: func(s *Stats) error {
			u, err := st.PartialUsage()
			s.PartialUploads, s.PartialBytes = &u.Uploads, &u.Bytes
			return err
		},
	})
}

// partialExpiry returns the removal of the interrupted uploads older than
// ttl (board.partial_ttl), which logs what it removed.
func partialExpiry(st *board.Store, ttl time.Duration, log *zap.Logger) func() error {
	return func() error {
		gone, err := st.ExpirePartials(ttl)
		if gone.Uploads > 0 {
			log.Info("removed interrupted uploads older than board.partial_ttl", zap.Int("uploads", gone.Uploads),
				zap.Int64("bytes", gone.Bytes), zap.Duration("partial_ttl", ttl))
		}
		return err
	}
}

// every returns a loop that runs fn each period (at least a second) until
// ctx ends.
func every(period time.Duration, fn func()) func(context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(max(period, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}
}

// boardHandler serves one student session per connection (PROTOCOL.md §5).
type boardHandler struct {
	store *board.Store
	// course decides the terms of submissions and serves the history and
	// the assignments (PROTOCOL.md §5.4).
	course session.Course
	// session is the session configuration in force: a renewal of the
	// board's certificate swaps in one with the new certificate and key.
	session atomic.Pointer[session.ServerConfig]
	limits  config.Limits
	uploads board.UploadLimits
	log     *zap.Logger
	// logContent logs the text of a message submission (board.log_content).
	logContent bool

	metrics  *metrics.Metrics // nil: counts nothing
	refusals lineBudget       // the lines of sessions refused before the student proved anything
	now      func() time.Time // the clock of refusals; time.Now if nil
}

func (h *boardHandler) handle(_ context.Context, c net.Conn, t *tracked) {
	peer := c.RemoteAddr().String()
	log := h.log.With(zap.String("peer", peer))
	wc := wire.NewConn(c, wireOptions(h.limits, wire.MaxFirstFrameBoard))
	started := time.Now()
	wc.SetDeadline(started.Add(h.limits.HandshakeTimeout.D()))
	sc, err := session.Server(wc, h.session.Load())
	h.metrics.SessionDone(err == nil, time.Since(started))
	h.countRefusal(err)
	var he *session.HandshakeError
	if err != nil && errors.As(err, &he) && he.Proven {
		// The student proved her key before the handshake failed (at STEP
		// 4, or refused by her at STEP 5): not a stranger's failure.
		t.proven()
		logHandshake(h.log, sc, err)
		logSessionEnd(log, "session refused", err)
		return
	}
	if err != nil {
		// The peer proved nothing: its failure counts against its source,
		// and the lines it logs are rate-limited — all but those of the
		// board's own trouble, which the operator must see.
		code := wire.CodeOf(err)
		t.failed(code)
		hlog := h.log
		if !ownTrouble(code) {
			now := time.Now
			if h.now != nil {
				now = h.now
			}
			held, ok := h.refusals.take(now())
			if !ok {
				return
			}
			if held > 0 {
				hlog, log = hlog.With(zap.Int("not_logged", held)), log.With(zap.Int("not_logged", held))
			}
		}
		logHandshake(hlog, sc, err)
		logSessionEnd(log, "session refused", err)
		return
	}
	t.proven()
	logHandshake(h.log, sc, nil)
	defer sc.Close()
	sid := sc.SID()
	log = log.With(logging.SID(sid))

	req, err := sc.ReadRequest()
	if err != nil {
		logSessionEnd(log, "no request", err)
		return
	}
	course := h.course
	if course == nil {
		course = &board.Lab{Store: h.store, MaxSize: h.uploads.MaxSize}
	}
	var sreq *wire.SubmitRequest
	switch req := req.(type) {
	case *wire.HistoryRequest:
		n, err := sc.ServeHistory(req, course)
		if err != nil {
			logSessionEnd(log, "history not sent", err)
			return
		}
		logging.Step(log, 6, "history sent", zap.String("assignment", req.Assignment), zap.Int("receipts", n))
		return
	case *wire.AssignmentsRequest:
		n, err := sc.ServeAssignments(course)
		if err != nil {
			logSessionEnd(log, "assignments not sent", err)
			return
		}
		logging.Step(log, 6, "assignments sent", zap.Int("assignments", n))
		return
	case *wire.SubmitRequest:
		sreq = req
	}
	uploadStarted := time.Now()
	sub, err := sc.ReceiveSubmission(sreq, course, func(terms *wire.Terms) *wire.Receiver {
		limits := h.uploads
		if terms.MaxSize != 0 && terms.MaxSize < uint64(limits.MaxSize) {
			limits.MaxSize = int64(terms.MaxSize)
		}
		return h.store.Receiver(sid, limits)
	})
	if err != nil {
		h.countRefusal(err)
		var refusal *wire.Refusal
		if errors.As(err, &refusal) && refusal.Code == wire.CodeStorage {
			// Not the student's doing: the operator must look at the disk.
			log.Error("could not store an upload (is board.data_dir full or read-only?); the student was told to try again later",
				zap.Error(err), zap.NamedError("cause", refusal.Err))
		} else {
			logSessionEnd(log, "submission not received", err)
		}
		wire.LingerClose(c, time.Second, 4<<20)
		return
	}
	var text string
	if h.logContent {
		text = messageText(sub.File)
	}
	// The store assigns the id and the time, has the receipt signed, and
	// commits the submission with the receipt; only then is it sent, as
	// stored.
	rec, err := h.store.Commit(sub, peer, sc.SignReceipt)
	var refusal *wire.Refusal
	if errors.As(err, &refusal) {
		// Another session of hers committed first (Course.Admit).
		h.metrics.Refused(refusal.Code.String())
		logSessionEnd(log, "submission refused at commit", err)
		wire.Answer(sc, refusal) //nolint:errcheck // closing
		return
	}
	if err != nil {
		log.Error("could not store the submission; check board.data_dir", zap.Error(err))
		h.metrics.Refused(wire.CodeStorage.String())
		wire.Answer(sc, wire.Refusef(wire.CodeStorage, //nolint:errcheck // closing
			"the board could not store your submission (%s); nothing was accepted; try again later", wire.StorageReason(err)))
		return
	}
	fields := []zap.Field{zap.String("id", rec.ID), zap.String("assignment", rec.Assignment),
		zap.Uint32("version", rec.Version), zap.String("name", rec.Name),
		zap.Int64("size", rec.Size), zap.String("sha256", fmt.Sprintf("%x", rec.SHA256)), zap.String("suite", rec.Suite)}
	if rec.LateMS > 0 {
		fields = append(fields, zap.Uint64("late_ms", rec.LateMS))
	}
	if rec.Original != rec.Name {
		fields = append(fields, zap.String("original", rec.Original))
	}
	if rec.Resumed > 0 {
		fields = append(fields, zap.Int64("resumed_from", rec.Resumed))
	}
	if text != "" {
		fields = append(fields, zap.String("message", text))
	}
	logging.Step(log, 6, "MAC verified, submission stored", fields...)
	h.metrics.Stored(rec.Size, time.Since(uploadStarted))

	receipt, err := rec.ReceiptMessage()
	if err == nil {
		err = sc.SendReceipt(receipt)
	}
	if err != nil {
		log.Warn("receipt not delivered (the submission is stored)", zap.String("id", rec.ID), zap.Error(err))
	}
}

// logHandshake logs the board's steps 3 and 4 from what session.Server
// returned: the STEP 3 and STEP 4 lines of an established session; for a
// refused one, the STEP 3 line if the student had proven possession of her
// key (only then: a stranger's hello gets no line of its own), then "STEP n:
// session refused" with the refusal's code and reason.
func logHandshake(log *zap.Logger, sc *session.Conn, err error) {
	if err == nil {
		logStudentChecked(log, sc.SID(), sc.PeerCertificate(), sc.Suite())
		logging.Step(log, 4, "session key sent; session established", logging.SID(sc.SID()),
			zap.String("key_transport", session.KeyTransportName(sc.KeyTransport())),
			zap.String("suite", session.SuiteName(sc.Suite())))
		return
	}
	var he *session.HandshakeError
	if !errors.As(err, &he) {
		return // the board's own configuration, not a student's session
	}
	if he.Proven {
		logStudentChecked(log, he.SID, he.Student, he.Suite)
	}
	var refusal *wire.Refusal
	if !errors.As(he.Err, &refusal) {
		return
	}
	fields := []zap.Field{zap.Stringer("code", refusal.Code), zap.String("reason", refusal.Text)}
	if he.SID != "" { // the ClientHello was read
		fields = append([]zap.Field{logging.SID(he.SID)}, fields...)
	}
	logging.Step(log, he.Step, "session refused", fields...)
}

// logStudentChecked logs STEP 3, the student's certificate checked and her
// hello signed with its key, and warns when the session is to use RC4.
func logStudentChecked(log *zap.Logger, sid string, cert *x509.Certificate, suite uint16) {
	logging.Step(log, 3, "student certificate checked; hello signed with its key", logging.SID(sid),
		zap.String("serial", keys.SerialHex(cert.SerialNumber)),
		zap.String("key", keys.Describe(cert.PublicKey)),
		zap.String("suite", session.SuiteName(suite)))
	if suite == session.SuiteRC4HMACSHA256 {
		log.Warn("RC4 is broken; this session uses it because board.allow_rc4 = true and the student offered it",
			logging.SID(sid))
	}
}

// maxLoggedMessage bounds the message text the board copies into its log.
const maxLoggedMessage = 4 << 10

// messageText returns the text of a message submission (message.txt, small,
// UTF-8, received into memory), for the board's log where board.log_content
// asks for it: the course's "verify the MAC, output the message". Reports are
// logged by name, size and hash only.
func messageText(in *wire.Received) string {
	mem, ok := in.Sink.(*wire.Memory)
	if !ok || in.Name != messageFileName || in.Size > maxLoggedMessage || !utf8.Valid(mem.Bytes()) {
		return ""
	}
	return string(mem.Bytes())
}

// logSessionEnd logs why a session ended early, at a level that fits: a
// refusal or a peer's error is news, not an error of the board.
func logSessionEnd(log *zap.Logger, what string, err error) {
	var refusal *wire.Refusal
	var peer *wire.Error
	switch {
	case errors.As(err, &peer):
		log.Info(what+": the student refused", zap.String("code", peer.Code.String()), zap.String("reason", peer.Text))
	case wire.PeerGone(err): // a truncated frame is a refusal of ours, but nobody is there to hear it
		log.Info(what+": the student hung up", zap.Error(err))
	case errors.As(err, &refusal):
		log.Info(what, zap.String("code", refusal.Code.String()), zap.String("reason", refusal.Text))
	default:
		log.Info(what, zap.Error(err))
	}
}

// boardID is the board's identity: the root it trusts, and its own
// certificate and key, which the renewer keeps renewed.
//
// Whoever uses the board's certificate — the sessions, the watch on the CA —
// loads renewer.Current() each time it needs it, and may wait on
// renewer.Changed() to learn of a renewal (the old certificate is then
// revoked as superseded, so a watch reconnects with the new one).
type boardID struct {
	root    *x509.Certificate
	renewer *ca.Renewer
}

// current returns the board's certificate and key, for the watch
// (board.WatchOptions.Identity).
func (id *boardID) current() (*x509.Certificate, crypto.Signer) {
	c := id.renewer.Current()
	return c.Certificate, c.Key
}

// boardIdentity settles the board's root of trust and its certificate: it
// reuses a valid certificate in board.data_dir, renews it by its key two
// thirds into its life, and otherwise enrolls with the CA using the one-time
// board token in board.enroll_token_file. The renewer it returns renews the
// certificate while the board runs (its Run is one of the board's loops).
func boardIdentity(ctx context.Context, cfg *config.Config, log *zap.Logger) (*boardID, error) {
	b := &cfg.Board
	root, err := boardRoot(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	o := ca.IdentityOptions{
		Dir:          b.DataDir,
		Name:         b.Name,
		Profile:      wire.ProfileBoard,
		Root:         root,
		Client:       ca.Client{Addr: b.CAAddr},
		KeyAlgorithm: b.KeyAlgorithm,
		Token:        func() (string, error) { return boardToken(b.EnrollTokenFile) },
		OnRenew: func(reason error) {
			log.Info("not reusing the board certificate as it is", zap.String("reason", reason.Error()))
		},
		OnRenewFailed: func(err error) {
			log.Warn("could not renew the board certificate; using it while it is valid, and trying again", zap.Error(err))
		},
	}
	id, err := ca.ReuseOrEnroll(ctx, o)
	if err != nil {
		return nil, err
	}
	logBoardCertificate(log, id)
	r := ca.NewRenewer(o, id)
	r.OnError = func(err error) {
		log.Error("could not renew the board certificate; trying again", zap.Error(err))
	}
	return &boardID{root: root, renewer: r}, nil
}

// logBoardCertificate logs the board certificate in force.
func logBoardCertificate(log *zap.Logger, id *ca.Identity) {
	log.Info("board certificate", zap.String("serial", keys.SerialHex(id.Certificate.SerialNumber)),
		zap.Time("not_after", id.Certificate.NotAfter), zap.Time("renew_at", ca.RenewAt(id.Certificate)),
		zap.Bool("reused", id.Reused), zap.Bool("renewed", id.Renewed))
}

// boardToken reads the one-time board token the board enrolls with when it
// has no certificate that serves or renews.
func boardToken(path string) (string, error) {
	if path == "" {
		return "", errors.New("the board has no valid certificate and board.enroll_token_file is not set: point it at a one-time board token (board-enroll.token in the CA's data_dir after its first start, or one from `pkiboard token --board` on the CA's machine)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("the board has no valid certificate and cannot read its board token (board.enroll_token_file): %w; make one on the CA's machine with `pkiboard token --board`", err)
	}
	defer clear(data)
	token := strings.TrimSpace(string(data))
	if _, err := ca.TokenKey(token); err != nil {
		return "", fmt.Errorf("board.enroll_token_file %s: %w", path, err)
	}
	return token, nil
}

// boardRoot returns the root the board trusts: board.root_file; else the root
// saved in its data dir by an earlier start; else the CA's, fetched and checked
// against board.root_fingerprint (or trusted on first use, loudly).
func boardRoot(ctx context.Context, cfg *config.Config, log *zap.Logger) (*x509.Certificate, error) {
	b := &cfg.Board
	anchor := &ca.Anchor{
		Fingerprint: b.RootFingerprint, // nil: none to check
		File:        b.RootFile,
		Saved:       filepath.Join(b.DataDir, ca.RootFile),
		Setting:     "board.root_fingerprint",
	}
	root, firstUse, err := anchor.Resolve(ctx, ca.Client{Addr: b.CAAddr})
	if err != nil {
		return nil, fmt.Errorf("root certificate: %w", err)
	}
	if firstUse {
		log.Warn("TRUST ON FIRST USE: the root certificate fetched from the CA was accepted with no board.root_fingerprint to check it; verify this fingerprint out of band and put it in the config",
			zap.String("fingerprint", keys.FingerprintHex(root)), zap.String("ca", b.CAAddr))
	}
	return root, nil
}

// certificateValid reports whether cert is within its validity at now: the
// board's readiness check of its own certificate.
func certificateValid(cert *x509.Certificate, now time.Time) error {
	switch {
	case now.Before(cert.NotBefore):
		return fmt.Errorf("the board's certificate (serial %s) is not valid before %s", keys.SerialHex(cert.SerialNumber), cert.NotBefore.UTC().Format(time.RFC3339))
	case now.After(cert.NotAfter):
		return fmt.Errorf("the board's certificate (serial %s) expired at %s", keys.SerialHex(cert.SerialNumber), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// countRefusal counts err in the refusals metric if it is the board's
// refusal (not the student's, nor a broken connection).
func (h *boardHandler) countRefusal(err error) {
	var r *wire.Refusal
	if errors.As(err, &r) {
		h.metrics.Refused(r.Code.String())
	}
}
