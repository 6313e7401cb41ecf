package roles

import (
	"bufio"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/internal/logging"
	"pkiboard/session"
	"pkiboard/wire"
)

// messageFileName is the name a message submission travels under.
const messageFileName = "message.txt"

// sidPath is what a SID must look like to name a directory on the student's
// machine; the CA's own pattern may be stricter.
var sidPath = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// content is what a student submits: the same report for every ID, or a
// message made per ID.
type content struct {
	original string   // the file's own base name (message.txt for a message)
	name     string   // the name it travels under: SafeName of original
	report   *os.File // nil for a message
	size     int64
	sum      [32]byte
	text     string // --message; "" for the default
}

// forSID returns the bytes to submit for sid and their size and hash.
func (c *content) forSID(sid string) (io.ReaderAt, int64, [32]byte) {
	if c.report != nil {
		return c.report, c.size, c.sum
	}
	text := c.text
	if text == "" {
		text = strings.Repeat(fmt.Sprintf("This is submission from %s.\n", sid), 10)
	}
	return strings.NewReader(text), int64(len(text)), sha256.Sum256([]byte(text))
}

// RunStudent enrolls and submits for every ID in opts, student.parallel IDs at
// a time, printing the course's lines to opts.Out. It tries
// every ID and then fails, naming each ID that failed and why, if any did.
func RunStudent(ctx context.Context, cfg *config.Config, log *zap.Logger, opts StudentOptions) error {
	s := &cfg.Student
	if err := usableSIDs(opts.IDs); err != nil {
		return err
	}
	assignment := opts.Assignment
	if assignment == "" {
		assignment = s.Assignment
	}
	if assignment == "" {
		assignment = board.LabAssignment
	}
	c, err := prepareContent(opts, assignment)
	if err != nil {
		return fmt.Errorf("student: %w", err)
	}
	if c.original != c.name {
		fmt.Fprintf(opts.Out, "your file %q is submitted under the safe name %q (the board keeps %q as its original name)\n",
			c.original, c.name, c.original)
	}
	if c.report != nil {
		defer c.report.Close()
	}
	tokens, err := loadTokens(s.TokenFile, opts.IDs)
	if err != nil {
		return fmt.Errorf("student: %w", err)
	}
	var bars *uploadBars
	if c.report != nil {
		bars = opts.Screen.bars()
	}
	st := &student{cfg: s, log: log, out: &lockedWriter{w: opts.Screen.writerTo(opts.Out)}, content: c, tokens: tokens, assignment: assignment,
		suites: s.Suites.IDs(), trustAnchor: &ca.Anchor{Fingerprint: s.RootFingerprint, Saved: filepath.Join(s.DataDir, ca.RootFile)},
		seen: newCRLSeen(s.DataDir), bars: bars}

	errs := make([]error, len(opts.IDs))
	slots := make(chan struct{}, s.Parallel)
	var wg sync.WaitGroup
	for i, sid := range opts.IDs {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err() // interrupted before its turn
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := st.run(ctx, sid); err != nil {
				errs[i] = err
				if ctx.Err() == nil {
					log.Error("submission failed", logging.SID(sid), zap.Error(err))
				}
			}
		}()
	}
	wg.Wait()
	bars.wait()

	if ctx.Err() != nil {
		intr := &InterruptedError{Command: ShellQuote(opts.Command)}
		for i, sid := range opts.IDs {
			intr.Lines = append(intr.Lines, interruptedLine(sid, errs[i]))
		}
		return fmt.Errorf("student: %w", intr)
	}

	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %s", opts.IDs[i], studentMessage(err)))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("student: %d of %d IDs failed:\n  %s", len(failed), len(opts.IDs), strings.Join(failed, "\n  "))
	}
	return nil
}

// usableSIDs checks that each SID can name its directory on this machine.
func usableSIDs(ids []string) error {
	for _, sid := range ids {
		if !sidPath.MatchString(sid) {
			return fmt.Errorf("student: %q is not a usable student ID (letters, digits, '_' and '-', at most 64, starting with a letter or digit)", sid)
		}
		if !filepath.IsLocal(sid) { // on Windows, a device name: CON, NUL, COM1…
			return fmt.Errorf("student: %q names a device on this system and cannot name the ID's directory", sid)
		}
	}
	return nil
}

// studentMessage turns an error into the sentence a student reads: what to
// check when the CA or the board is not where the config says, the peer's own
// sentence when it refused.
func studentMessage(err error) string {
	var cannot *ca.CannotRenewError
	if errors.As(err, &cannot) {
		return cannot.Error()
	}
	var token *NeedsTokenError
	if errors.As(err, &token) {
		return token.Error()
	}
	var reach *ReachError
	if errors.As(err, &reach) {
		return reach.Error()
	}
	var peer *wire.Error
	if errors.As(err, &peer) {
		return fmt.Sprintf("refused (%s): %s", peer.Code, peer.Text)
	}
	var refusal *wire.Refusal
	if errors.As(err, &refusal) && !wire.PeerGone(err) { // not a frame cut short by the peer's going
		return fmt.Sprintf("we refused the board (%s): %s", refusal.Code, refusal.Text)
	}
	return err.Error()
}

// prepareContent opens what the student submits to assignment: --report
// FILE, --message TEXT, or — for the lab's assignment alone — the lab's
// default message.
func prepareContent(opts StudentOptions, assignment string) (*content, error) {
	if opts.Report == "" {
		if opts.Message == "" && assignment != board.LabAssignment {
			return nil, fmt.Errorf("nothing to submit to assignment %q: give --report FILE or --message TEXT (only the lab's assignment %q has a default message)",
				assignment, board.LabAssignment)
		}
		return &content{original: messageFileName, name: messageFileName, text: opts.Message}, nil
	}
	f, err := os.Open(opts.Report)
	if err != nil {
		return nil, fmt.Errorf("--report: %w", err)
	}
	sum, size, err := wire.HashFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("--report %s: %w", opts.Report, err)
	}
	original := filepath.Base(opts.Report)
	return &content{original: original, name: wire.SafeName(original, "report"), report: f, size: size, sum: sum}, nil
}

// loadTokens reads the token file (see readTokenFile) and, for a single ID,
// the PKIBOARD_TOKEN environment variable.
func loadTokens(path string, ids []string) (map[string]string, error) {
	tokens := map[string]string{}
	if path != "" {
		var err error
		if tokens, err = readTokenFile(path, "student.token_file", ids); err != nil {
			return nil, err
		}
	}
	if env := strings.TrimSpace(os.Getenv("PKIBOARD_TOKEN")); env != "" {
		if len(ids) != 1 {
			return nil, errors.New("PKIBOARD_TOKEN holds one token, for one SID; for several IDs use student.token_file")
		}
		tokens[ids[0]] = env
	}
	return tokens, nil
}

// TokenFileFormat says, for help texts, what a token file holds.
const TokenFileFormat = `one "SID TOKEN" line per student (blank lines and lines starting with # are skipped), or, where one SID is meant, the bare token alone`

// readTokenFile reads a token file, the one format of student.token_file and
// `pkiboard enroll --token-file` (TokenFileFormat): "SID TOKEN" lines, or a
// bare token when ids holds one SID. setting names the file in errors.
func readTokenFile(path, setting string, ids []string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	defer f.Close()
	tokens := map[string]string{}
	var bare string
	lines := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines++
		fields := strings.Fields(line)
		switch len(fields) {
		case 1:
			bare = fields[0]
		case 2:
			tokens[fields[0]] = fields[1]
		default:
			return nil, fmt.Errorf("%s %s:%d: want \"SID TOKEN\" or a bare token", setting, path, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	if bare != "" {
		switch {
		case lines > 1:
			return nil, fmt.Errorf("%s %s: a bare token must be alone in its file; for several students write \"SID TOKEN\" lines", setting, path)
		case len(ids) != 1:
			return nil, fmt.Errorf("%s %s holds a bare token, for one SID, but %d IDs are asked for: write \"SID TOKEN\" lines", setting, path, len(ids))
		}
		tokens[ids[0]] = bare
	}
	return tokens, nil
}

// TokenFor returns sid's enrollment token from the token file at path (see
// readTokenFile), for `pkiboard enroll --token-file`.
func TokenFor(path, sid string) (string, error) {
	tokens, err := readTokenFile(path, "--token-file", []string{sid})
	if err != nil {
		return "", err
	}
	tok, ok := tokens[sid]
	if !ok {
		return "", fmt.Errorf("--token-file %s has no line for %s", path, sid)
	}
	return tok, nil
}

// student runs the student's steps for each ID.
type student struct {
	cfg         *config.StudentConfig
	log         *zap.Logger
	out         *lockedWriter
	content     *content
	assignment  string // the assignment submitted to
	tokens      map[string]string
	suites      []uint16
	trustAnchor *ca.Anchor  // student.root_fingerprint, or else the root pinned in student.data_dir on first use
	seen        *crlSeen    // the highest CRL number seen in a board status, per root
	bars        *uploadBars // nil: no progress bars

	rootMu  sync.Mutex
	trusted *x509.Certificate // the root, once settled; see root
}

// studentID is one SID's identity on this machine.
type studentID struct {
	key  crypto.Signer
	cert *x509.Certificate
	root *x509.Certificate
}

// run does everything for one SID: enroll (or reuse), open the session, submit,
// and keep the receipt.
func (st *student) run(ctx context.Context, sid string) error {
	started := time.Now()
	dir := filepath.Join(st.cfg.DataDir, sid)
	setupCtx, cancel := context.WithTimeout(ctx, st.cfg.Timeout.D())
	defer cancel()
	id, err := st.identity(setupCtx, sid, dir)
	if err != nil {
		return err
	}
	st.out.printf("%s sign finished\n", sid)

	// A board at max_conns answers busy: try again shortly, as it asks.
	var sub *submitted
	submit := func() error {
		return retryBusy(setupCtx, st.log, sid, "the board", func() error {
			var err error
			sub, err = st.submit(ctx, setupCtx, sid, id)
			return err
		})
	}
	err = submit()
	if refused := certRefused(err); refused != nil {
		// The board will not take this certificate again: enroll anew,
		// with a new key, and try the session once more.
		if id, err = st.reenroll(setupCtx, sid, dir, id, refused); err != nil {
			return err
		}
		err = submit()
	}
	if err != nil {
		return err
	}
	receipt := sub.receipt
	path, err := saveReceipt(dir, receipt, sub.board)
	if err != nil {
		return fmt.Errorf("the submission was accepted (receipt %s) but the receipt could not be saved: %w", receipt.ID, err)
	}
	logging.Step(st.log, 6, "receipt verified and saved", logging.SID(sid), zap.String("id", receipt.ID),
		zap.String("assignment", receipt.Assignment), zap.Uint32("version", receipt.Version),
		zap.String("name", receipt.Name), zap.Int64("size", int64(receipt.Size)), zap.Int64("resumed_from", sub.resumed),
		zap.Uint64("late_ms", receipt.Late), zap.String("file", path), zap.Duration("elapsed", time.Since(started)))
	st.out.printf("%s submitted: receipt %s, SHA-256 %x, saved as %s\n", sid, receipt.ID, receipt.SHA256, path)
	st.out.printf("%s %s\n", sid, receiptStatement(receipt))
	return nil
}

// receiptStatement is what a receipt says of the submission's time:
// "received T, on time | n minutes late, version v".
func receiptStatement(r *wire.Receipt) string {
	return fmt.Sprintf("received %s, %s, version %d", msTime(r.Received), lateness(r.Late), r.Version)
}

// lateness words a receipt's late field.
func lateness(lateMS uint64) string {
	if lateMS == 0 {
		return "on time"
	}
	minutes := (lateMS + 59_999) / 60_000 // a part of a minute late counts
	unit := "minutes"
	if minutes == 1 {
		unit = "minute"
	}
	return fmt.Sprintf("%d %s late (%d ms)", minutes, unit, lateMS)
}

// msTime formats milliseconds since the Unix epoch as a receipt file does.
func msTime(ms uint64) string {
	return time.UnixMilli(int64(ms)).UTC().Format("2006-01-02T15:04:05.000Z")
}

// termsStatement is what the terms of an assignment say, for the student
// before her upload.
func termsStatement(t *wire.Terms) string {
	var parts []string
	if t.Due != 0 {
		parts = append(parts, "due "+msTime(t.Due))
	} else {
		parts = append(parts, "no due time")
	}
	if t.Lock != 0 {
		parts = append(parts, "locks "+msTime(t.Lock))
	}
	if t.Extended {
		parts = append(parts, "your extension applies")
	}
	if t.Due != 0 {
		parts = append(parts, "a submission received after the due time is late")
	}
	return fmt.Sprintf("assignment %q: %s", t.Assignment, strings.Join(parts, "; "))
}

// submitted is what a submission the board accepted leaves the student: the
// verified receipt, the board's certificate that signed it, and the offset
// the upload resumed from (0 for a fresh one).
type submitted struct {
	receipt *wire.Receipt
	board   *x509.Certificate
	resumed int64
}

// submit opens one session with the board as sid and submits: steps 3 to 6.
// setupCtx bounds the session; cancelling ctx closes it.
func (st *student) submit(ctx, setupCtx context.Context, sid string, id *studentID) (*submitted, error) {
	sc, done, err := st.session(ctx, setupCtx, sid, id)
	if err != nil {
		return nil, err
	}
	defer done()
	body, size, sum := st.content.forSID(sid)
	var (
		resumed, sent int64
		up            *upload
	)
	assignment := st.assignment
	if assignment == "" {
		assignment = board.LabAssignment
	}
	original := st.content.original
	if original == "" {
		original = st.content.name
	}
	req := session.NewSubmitRequest(assignment, original, size, sum)
	receipt, _, err := sc.Submit(req, body, session.SubmitOptions{
		OnTerms: func(t *wire.Terms) error {
			st.out.printf("%s %s\n", sid, termsStatement(t))
			return nil
		},
		Progress: func(n int64) {
			sent = n
			up.sent(n)
		},
		OnResume: func(off int64) {
			resumed, sent = off, off
			if off > 0 {
				st.log.Info("resuming an interrupted upload", logging.SID(sid), zap.Int64("offset", off), zap.Int64("size", size))
				st.out.printf("%s resuming at byte %d of %d (%s of %s already on the board)\n", sid, off, size, mib(uint64(off)), mib(uint64(size)))
			}
			if st.content.report != nil {
				up = st.bars.start(sid, off, size)
			}
		},
	})
	if err != nil {
		up.stop()
		if ctx.Err() != nil && st.content.report != nil && resumed <= sent && sent < size {
			return nil, &UploadInterruptedError{SID: sid, Name: original, Sent: sent, Size: size}
		}
		return nil, err
	}
	up.stop() // complete: stays as it is
	return &submitted{receipt: receipt, board: sc.PeerCertificate(), resumed: resumed}, nil
}

// session opens a session with the board as sid: steps 3 to 5, the board's
// certificate and status checked. setupCtx bounds the session; cancelling
// ctx closes it; done closes it and must be called once the session is
// over.
func (st *student) session(ctx, setupCtx context.Context, sid string, id *studentID) (sc *session.Conn, done func(), err error) {
	bp := studentBoard(st.cfg.BoardAddr, st.cfg.Timeout.D())
	nc, err := bp.dial(setupCtx, st.log, logging.SID(sid))
	if err != nil {
		return nil, nil, err
	}
	timeout := st.cfg.Timeout.D()
	wc := wire.NewConn(nc, wire.Options{MaxFrame: session.MaxRecord, ReadTimeout: timeout, WriteTimeout: timeout})
	if dl, ok := setupCtx.Deadline(); ok {
		wc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	seen, err := st.seen.highest(id.root)
	if err != nil {
		stop()
		nc.Close()
		return nil, nil, err
	}
	sc, err = session.Client(wc, &session.ClientConfig{
		SID:          sid,
		Certificate:  id.cert,
		Key:          id.key,
		Root:         id.root,
		BoardName:    st.cfg.BoardName,
		MinCRLNumber: seen,
		Suites:       st.suites,
	})
	if err != nil {
		stop()
		var refusal *wire.Refusal
		if he := (*session.HandshakeError)(nil); errors.As(err, &he) && errors.As(he.Err, &refusal) {
			logging.Step(st.log, 5, "board not accepted; session refused", logging.SID(sid),
				zap.Stringer("code", refusal.Code), zap.String("reason", refusal.Text))
		}
		return nil, nil, bp.reachError(err)
	}
	status := sc.BoardStatus()
	logging.Step(st.log, 5, "board verified; session key recovered", logging.SID(sid),
		zap.String("board", sc.PeerCertificate().Subject.CommonName),
		zap.Uint64("crl_number", status.CRLNumber),
		zap.String("suite", session.SuiteName(sc.Suite())))
	if err := st.seen.saw(id.root, status.CRLNumber); err != nil {
		st.log.Warn("could not remember the board status's CRL number; an older status would not be refused next time",
			logging.SID(sid), zap.Error(err))
	}
	return sc, func() { sc.Close(); stop() }, nil
}

// retryBusy runs attempt until it succeeds, fails other than by a busy
// refusal, or ctx ends. A daemon at one of its limits (max_conns,
// max_unproven, a source that keeps failing) answers busy ("try again
// shortly"), so the student does, after a growing, jittered pause.
func retryBusy(ctx context.Context, log *zap.Logger, sid, daemon string, attempt func() error) error {
	pause := 100 * time.Millisecond
	for {
		err := attempt()
		var peer *wire.Error
		if err == nil || !errors.As(err, &peer) || peer.Code != wire.CodeBusy {
			return err
		}
		wait := pause/2 + rand.N(pause/2+1)
		log.Info(daemon+" is busy; trying again", logging.SID(sid), zap.String("reason", peer.Text), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// root settles the root the student trusts, once for all IDs and before any
// request is sent (PROTOCOL.md §4.1): the root saved in student.data_dir
// (checked against student.root_fingerprint); else, with a fingerprint, no
// root but the pin, which the enrollment names and the CA's answer must
// match (adopt keeps the root it brings); else the CA's, fetched and trusted
// on first use, which is said loudly, and saved.
func (st *student) root(ctx context.Context, sid string) (*x509.Certificate, []byte, error) {
	st.rootMu.Lock()
	defer st.rootMu.Unlock()
	if st.trusted != nil {
		return st.trusted, nil, nil
	}
	var root *x509.Certificate
	var pin []byte
	var firstUse bool
	err := retryBusy(ctx, st.log, sid, "the CA", func() error {
		var err error
		root, pin, firstUse, err = st.trustAnchor.Settle(ctx, st.caClient(sid))
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's root certificate: %w", st.caPeer().reachError(err))
	}
	if root == nil {
		return nil, pin, nil
	}
	if firstUse {
		warnFirstUse(st.log, root, st.trustAnchor.Saved)
	}
	st.trusted = root
	return root, nil, nil
}

// adopt keeps root, which an enrollment under the pinned fingerprint
// brought and checked, as the root of every ID, and saves it in
// student.data_dir.
func (st *student) adopt(root *x509.Certificate) error {
	st.rootMu.Lock()
	defer st.rootMu.Unlock()
	if st.trusted != nil {
		return nil
	}
	if err := st.trustAnchor.Save(root); err != nil {
		return err
	}
	st.trusted = root
	return nil
}

// identity returns sid's key and certificate: reused from dir while valid and
// less than two thirds into its life, renewed by its key after that, and
// otherwise enrolled anew with sid's token.
func (st *student) identity(ctx context.Context, sid, dir string) (*studentID, error) {
	root, pin, err := st.root(ctx, sid)
	if err != nil {
		return nil, err
	}
	id, err := ca.ReuseOrEnroll(ctx, ca.IdentityOptions{
		Dir:          dir,
		Name:         sid,
		Profile:      wire.ProfileStudent,
		Root:         root,
		Pin:          pin,
		Client:       st.caClient(sid),
		KeyAlgorithm: st.cfg.KeyAlgorithm,
		Token:        func() (string, error) { return st.tokens[sid], nil },
		Retry: func(attempt func() error) error {
			return retryBusy(ctx, st.log, sid, "the CA", attempt)
		},
		OnRenew: func(reason error) {
			st.log.Info("not reusing the saved certificate", logging.SID(sid), zap.String("reason", reason.Error()))
		},
		OnRenewFailed: func(err error) {
			st.log.Warn("could not renew the certificate; using it while it is valid", logging.SID(sid), zap.Error(err))
		},
	})
	if err != nil {
		return nil, st.caPeer().reachError(err)
	}
	if root == nil {
		if err := st.adopt(id.Root); err != nil {
			return nil, err
		}
	}
	cert := id.Certificate
	switch {
	case id.Reused:
		logging.Step(st.log, 2, "reusing the certificate in the data directory", logging.SID(sid),
			zap.String("serial", keys.SerialHex(cert.SerialNumber)), zap.Time("not_after", cert.NotAfter))
	case id.Renewed:
		logging.Step(st.log, 2, "certificate renewed", logging.SID(sid),
			zap.String("serial", keys.SerialHex(cert.SerialNumber)), zap.Time("not_after", cert.NotAfter))
	default:
		logging.Step(st.log, 2, "certificate received", logging.SID(sid),
			zap.String("serial", keys.SerialHex(cert.SerialNumber)), zap.Time("not_after", cert.NotAfter))
	}
	return &studentID{key: id.Key, cert: cert, root: id.Root}, nil
}

// certRefused returns the board's refusal in err when it refused the
// student's certificate for good (cert-revoked, cert-expired), nil otherwise.
func certRefused(err error) *wire.Error {
	var peer *wire.Error
	if errors.As(err, &peer) && (peer.Code == wire.CodeCertRevoked || peer.Code == wire.CodeCertExpired) {
		return peer
	}
	return nil
}

// reenroll answers the board's refusal of id's certificate: it moves key.pem
// and cert.pem aside in dir (their key is never certified again) and, with
// sid's token, enrolls a new key pair; without one it says how to get one.
func (st *student) reenroll(ctx context.Context, sid, dir string, id *studentID, refused *wire.Error) (*studentID, error) {
	suffix := fmt.Sprintf(".%s-%s", refused.Code, keys.SerialHex(id.cert.SerialNumber))
	for _, name := range []string{ca.KeyFile, ca.CertFile} {
		path := filepath.Join(dir, name)
		if err := os.Rename(path, path+suffix); err != nil {
			return nil, fmt.Errorf("the board refused the certificate (%s), and moving %s aside failed: %w", refused.Code, path, err)
		}
	}
	st.log.Warn("the board refused the certificate; its key and certificate are moved aside and never used again",
		logging.SID(sid), zap.Stringer("code", refused.Code), zap.String("reason", refused.Text),
		zap.String("serial", keys.SerialHex(id.cert.SerialNumber)), zap.String("moved_to", filepath.Join(dir, "*"+suffix)))
	if st.tokens[sid] == "" {
		return nil, &NeedsTokenError{SID: sid, Refused: refused}
	}
	st.out.printf("%s the board refused the certificate (%s); enrolling again with a new key pair and the token given\n", sid, refused.Code)
	return st.identity(ctx, sid, dir)
}

// NeedsTokenError is a submission's error when the board refused the
// student's certificate for good and no token was given to enroll again.
type NeedsTokenError struct {
	SID     string
	Refused *wire.Error // cert-revoked or cert-expired
}

func (e *NeedsTokenError) Error() string {
	return fmt.Sprintf("refused (%s): %s; its key and certificate are moved aside, and enrolling again with a new key pair needs a new token: "+
		"ask the course staff for a new token: `pkiboard token --sid %s` on the CA machine; then rerun with PKIBOARD_TOKEN=… or a `%s TOKEN` line in student.token_file",
		e.Refused.Code, e.Refused.Text, e.SID, e.SID)
}

// caPeer is the CA as the student looks for it.
func (st *student) caPeer() peer { return studentCA(st.cfg.CAAddr, st.cfg.Timeout.D()) }

// caClient is the student's client of the CA for sid: its connections say
// what they wait for and what they found, and STEP 1 is logged once a
// request has been sent.
func (st *student) caClient(sid string) ca.Client {
	p := st.caPeer()
	return ca.Client{
		Addr: p.addr,
		Dial: func(ctx context.Context) (net.Conn, error) { return p.dial(ctx, st.log, logging.SID(sid)) },
		Sent: func() {
			logging.Step(st.log, 1, "key pair ready; certificate signing request sent to the CA", logging.SID(sid), zap.String("ca", p.addr))
		},
	}
}

// lockedWriter serializes the lines of concurrent IDs.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, args...)
}
