package adversary

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"pkiboard/wire"
)

// The attacks, by the name --attack takes.
const (
	Eavesdrop        = "eavesdrop"
	Tamper           = "tamper"
	Truncate         = "truncate"
	Reorder          = "reorder"
	Replay           = "replay"
	SwapCert         = "swap-cert"
	SwapCertAndSID   = "swap-cert-and-sid"
	ImpersonateBoard = "impersonate-board"
	Downgrade        = "downgrade"
	StealSessionKey  = "steal-session-key"
)

// attackInfo describes one attack for --help and the log.
type attackInfo struct {
	name      string
	summary   string
	needsCert bool // it needs the adversary's own certificate and key
}

var attacks = []attackInfo{
	{Eavesdrop, "relay everything; report what could be read (searches every byte for the message text)", false},
	{Tamper, "flip one bit of the student's first Data record", false},
	{Truncate, "drop the student's last Data record", false},
	{Reorder, "swap the student's first two Data records", false},
	{Replay, "relay a session while recording it, then replay the student's frames to the board on a new connection", false},
	{SwapCert, "replace the student's certificate in the ClientHello with the adversary's own valid one (--cert)", true},
	{SwapCertAndSID, "as swap-cert, and claim the adversary's SID too", true},
	{ImpersonateBoard, "answer the student itself, as the board: with a self-signed certificate, or with --cert (and --status, a board status to staple)", false},
	{Downgrade, "strip aes-256-gcm and aes-256-ctr-hmac-sha256 from the student's offer, leaving rc4-hmac-sha256", false},
	{StealSessionKey, "relay everything, then try to recover the record keys from what was relayed", false},
}

// Attacks returns the attack names, in the order of the course's table.
func Attacks() []string {
	names := make([]string, len(attacks))
	for i, a := range attacks {
		names[i] = a.name
	}
	return names
}

// Describe returns a one-line description of every attack, for help texts.
func Describe() string {
	var b strings.Builder
	for _, a := range attacks {
		fmt.Fprintf(&b, "%-18s %s\n", a.name, a.summary)
	}
	return b.String()
}

// DefaultBoardName is the CN of the self-signed certificate impersonate-board
// makes: the name students expect (every ServerHello shows it in the clear).
const DefaultBoardName = "blackboard"

// Defaults of Config.
const (
	DefaultFrameTimeout = 30 * time.Second
	DefaultSessionLimit = 5 * time.Minute
	dialTimeout         = 10 * time.Second
	maxFrame            = 4 << 20  // more than any valid frame; the adversary is no enforcer
	maxRecorded         = 64 << 20 // bytes of the student's frames replay keeps
)

// Config configures an Adversary.
type Config struct {
	// Attack is one of Attacks().
	Attack string

	// Upstream is the board's address (host:port). Every attack but
	// impersonate-board connects to it once per student connection.
	Upstream string

	// Chain and Key are a certificate the CA issued to the adversary itself,
	// as a student ("mallory"), and its key. swap-cert and
	// swap-cert-and-sid need them; impersonate-board uses them instead of a
	// self-signed certificate; steal-session-key tries the key on the
	// encrypted session key.
	Chain []*x509.Certificate
	Key   crypto.Signer

	// BoardName is the CN of impersonate-board's self-signed certificate;
	// DefaultBoardName if empty.
	BoardName string

	// Status is a board status (wire.BoardStatus, as the root signed it)
	// that impersonate-board staples to its ServerHello: one stolen with a
	// board's key and certificate (its status.bin). Without it the impostor
	// staples a status it signs with its own key.
	Status []byte

	// FrameTimeout bounds the wait for one frame (DefaultFrameTimeout if
	// zero); SessionLimit bounds a whole connection (DefaultSessionLimit).
	FrameTimeout time.Duration
	SessionLimit time.Duration

	// Log receives every "ATTACK name: …" line; none if nil.
	Log *zap.Logger
}

// Adversary runs one attack on every student connection handed to Handle.
type Adversary struct {
	cfg Config

	// The identity impersonate-board presents.
	chain      []*x509.Certificate
	key        crypto.Signer
	selfSigned bool

	conns atomic.Int64
}

// New checks cfg and returns the adversary. For impersonate-board without
// cfg.Chain it makes its self-signed certificate here.
func New(cfg Config) (*Adversary, error) {
	i := slices.IndexFunc(attacks, func(a attackInfo) bool { return a.name == cfg.Attack })
	if i < 0 {
		return nil, fmt.Errorf("adversary: unknown attack %q; the attacks are %s", cfg.Attack, strings.Join(Attacks(), ", "))
	}
	if (len(cfg.Chain) == 0) != (cfg.Key == nil) {
		return nil, errors.New("adversary: give the adversary's certificate and its key together")
	}
	if len(cfg.Status) > 0 && cfg.Attack != ImpersonateBoard {
		return nil, fmt.Errorf("adversary: a board status to staple applies to %s only", ImpersonateBoard)
	}
	if attacks[i].needsCert && cfg.Key == nil {
		return nil, fmt.Errorf("adversary: %s needs the adversary's own certificate and key (--cert, --key): enroll one with `pkiboard enroll --sid mallory --out DIR`", cfg.Attack)
	}
	if cfg.Attack != ImpersonateBoard {
		if _, _, err := net.SplitHostPort(cfg.Upstream); err != nil {
			return nil, fmt.Errorf("adversary: upstream %q is not host:port (the board's address)", cfg.Upstream)
		}
	}
	if cfg.BoardName == "" {
		cfg.BoardName = DefaultBoardName
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = DefaultFrameTimeout
	}
	if cfg.SessionLimit <= 0 {
		cfg.SessionLimit = DefaultSessionLimit
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	a := &Adversary{cfg: cfg, chain: cfg.Chain, key: cfg.Key}
	if cfg.Attack == ImpersonateBoard && cfg.Key == nil {
		var err error
		if a.chain, a.key, err = selfSigned(cfg.BoardName); err != nil {
			return nil, fmt.Errorf("adversary: making a self-signed certificate: %w", err)
		}
		a.selfSigned = true
	}
	return a, nil
}

// Attack returns the attack the adversary runs.
func (a *Adversary) Attack() string { return a.cfg.Attack }

// selfSigned makes a certificate for name signed by its own fresh key: what an
// adversary without the CA's help can present.
func selfSigned(name string) ([]*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return []*x509.Certificate{cert}, key, nil
}

// Report is what one student connection came to, from the adversary's side:
// what it did and what it could see. Handle logs it as the connection's last
// line, "ATTACK name: finished".
type Report struct {
	Attack  string
	SID     string   // the SID of the student's ClientHello, in the clear
	Actions []string // what the adversary did, in order

	Frames [2]int   // frames received, by Direction
	Bytes  [2]int64 // bytes received (frames with their headers), by Direction
	// Records counts the records received by Direction and by the message
	// type that each one's clear type byte names.
	Records [2]map[string]int
	// SubmissionBytes is the sum of the student's Data ciphertexts: the size
	// of the submission, which records do not hide.
	SubmissionBytes int64

	// PlaintextFound counts the places where the message text ("This is
	// submission from"), or the SID inside a record, appeared in what was
	// relayed; BytesSearched is how many bytes were searched.
	PlaintextFound int
	BytesSearched  int64

	// Refusals sent in the clear during the handshake (0 if none).
	BoardRefusal   wire.Code
	StudentRefusal wire.Code

	// KeyCandidates and KeysRecovered: steal-session-key's attempt.
	KeyCandidates int
	KeysRecovered bool

	// PlaintextRead is how many bytes of the student's submission the
	// adversary decrypted (impersonate-board, if the student trusted it).
	PlaintextRead int64

	// Replay: the records replayed, and the board's answers to them.
	Replayed      int            // recorded records sent to the board again
	ReplayAnswers map[string]int // the board's records, by type
	ReplayRefusal wire.Code      // the board's refusal in the clear (0 if none)
}

// Direction is the way a frame travels.
type Direction int

const (
	ToBoard   Direction = iota // from the student, to the board
	ToStudent                  // from the board, to the student
)

func (d Direction) String() string {
	if d == ToBoard {
		return "student→board"
	}
	return "board→student"
}

// conn is the adversary's state for one student connection.
type conn struct {
	a   *Adversary
	log *zap.Logger

	mu  sync.Mutex // guards rep and nb while both directions relay
	rep Report
	nb  notebook
}

// Handle runs the attack on one student connection and returns what came of
// it. It closes c. It returns when both sides are done, at the latest
// SessionLimit after it started, or soon after ctx is cancelled.
func (a *Adversary) Handle(ctx context.Context, c net.Conn) *Report {
	n := a.conns.Add(1)
	ctx, cancel := context.WithTimeout(ctx, a.cfg.SessionLimit)
	defer cancel()
	s := &conn{
		a:   a,
		log: a.cfg.Log.With(zap.Int64("conn", n), zap.String("student", c.RemoteAddr().String())),
		rep: Report{Attack: a.cfg.Attack},
	}
	s.rep.Records = [2]map[string]int{{}, {}}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	if a.cfg.Attack == ImpersonateBoard {
		s.impersonate(c)
	} else {
		s.relaySession(ctx, c)
	}
	s.finish()
	return &s.rep
}

// say logs an observation: "ATTACK name: msg", with the SID once it is
// known. Like act, it is called with s.mu held, or once a single goroutine is
// left.
func (s *conn) say(msg string, fields ...zap.Field) {
	if s.rep.SID != "" {
		fields = append([]zap.Field{zap.String("sid", s.rep.SID)}, fields...)
	}
	s.log.Info("ATTACK "+s.a.cfg.Attack+": "+msg, fields...)
}

// act records and logs something the adversary did.
func (s *conn) act(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.rep.Actions = append(s.rep.Actions, msg)
	s.say(msg, zap.Bool("action", true))
}

// finish logs the connection's report.
func (s *conn) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.rep
	fields := []zap.Field{
		zap.String("sid", r.SID),
		zap.Int("actions", len(r.Actions)),
		zap.Int("frames_to_board", r.Frames[ToBoard]),
		zap.Int("frames_to_student", r.Frames[ToStudent]),
		zap.Int64("bytes_to_board", r.Bytes[ToBoard]),
		zap.Int64("bytes_to_student", r.Bytes[ToStudent]),
		zap.String("records_to_board", countString(r.Records[ToBoard])),
		zap.String("records_to_student", countString(r.Records[ToStudent])),
		zap.Int64("submission_bytes", r.SubmissionBytes),
		zap.Int("plaintext_found", r.PlaintextFound),
		zap.Int64("bytes_searched", r.BytesSearched),
		zap.Int("board_refusal", int(r.BoardRefusal)),
		zap.Int("student_refusal", int(r.StudentRefusal)),
	}
	switch s.a.cfg.Attack {
	case StealSessionKey:
		fields = append(fields, zap.Int("key_candidates", r.KeyCandidates), zap.Bool("keys_recovered", r.KeysRecovered))
	case ImpersonateBoard:
		fields = append(fields, zap.Int64("plaintext_read", r.PlaintextRead), zap.Bool("self_signed", s.a.selfSigned))
	case Replay:
		fields = append(fields, zap.Int("replayed_records", r.Replayed),
			zap.String("replay_answers", countString(r.ReplayAnswers)),
			zap.Int("replay_refusal", int(r.ReplayRefusal)))
	}
	s.log.Info("ATTACK "+s.a.cfg.Attack+": finished", fields...)
}

// countString formats counts by name as "Data:3 FileHeader:1", sorted.
func countString(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// codeString formats a code as "sid-mismatch (51)".
func codeString(c wire.Code) string { return fmt.Sprintf("%s (%d)", c, uint16(c)) }
