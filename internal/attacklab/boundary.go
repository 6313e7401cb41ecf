package attacklab

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// A Boundary is a row of the table whose attacker is not in the middle of a
// student's session: it observes or holds back the CA exchange, steals a
// board's token or key, floods a daemon as a stranger, or forges evidence.
// The lab plays the attacker (or starts the adversary) and gathers what the
// row observed — a finding — which judges itself.
type Boundary struct {
	ID       string // short name
	Name     string // the row's name in the table
	Attacker string // who the attacker is and what it does, for the progress lines
	Element  string // what stops the attack
	play     func(ctx context.Context, l *Lab, dir string) (finding, error)
}

// A finding is what a boundary row observed, measured in the run.
type finding interface {
	// judge says what the attacker did, who detected it, and whether the
	// attack reached its goal or went otherwise than the row expects.
	judge() judgement
}

// judgement is a finding's verdict, in the table's words.
type judgement struct {
	did, detected, outcome string
	succeeded              []string // how the attack reached its goal
	problems               []string // what went otherwise than the row expects
}

// Boundaries returns the boundary rows, in the table's order. The rogue
// board row comes before the stale status row, which revokes the board's
// certificate and enrolls the board again.
func Boundaries() []Boundary {
	return []Boundary{
		{
			ID: "token-sniff", Name: "passive token sniffing",
			Attacker: "observes a student's enrollment on the wire, searches it for her token, and enrolls with what it saw and a CSR of its own",
			Element:  "the token never crosses the network: the request carries only the Ed25519 public key derived from it and a signature over a binding that covers the CSR's hash and the root (PROTOCOL.md §4.1)",
			play:     playTokenSniff,
		},
		{
			ID: "token-race", Name: "token theft by delay",
			Attacker: "holds a student's enrollment request back and sends its own first, with her token key and signature and its own CSR",
			Element:  "the binding: the token's signature covers the CSR's hash, so it authorizes her CSR and no other; the CA checks it before it spends anything",
			play:     playTokenRace,
		},
		{
			ID: "rogue-board", Name: "a rogue board from a stolen board secret",
			Attacker: "captures the board's enrollment on the wire and steals the file board-enroll.token, then asks for a second board certificate with its own key",
			Element:  "no reusable board secret: a one-time board token, never on the wire, bound to the board's CSR, spent on the board's first certificate",
			play:     playRogueBoard,
		},
		{
			ID: "stale-status", Name: "a revoked board with a stale status",
			Attacker: "steals the board's key, certificate and status.bin, and plays the board with them after the board's certificate is revoked",
			Element:  "the board's status: root-signed, short-lived (ca.status_validity), and never older than the highest CRL number the student has seen",
			play:     playStaleStatus,
		},
		{
			ID: "chain-bomb", Name: "the chain bomb",
			Attacker: "sends hellos whose certificate claims the course root as its issuer but is signed by an RSA-8192 key of its own, new bytes each time",
			Element:  "one certificate per hello, checked against the root alone and first, the outcome cached per certificate; nothing expensive before the hello's signature",
			play:     playChainBomb,
		},
		{
			ID: "hello-replay", Name: "hello replay at volume",
			Attacker: "records a legitimate student's ClientHello and replays it many times, from many sources",
			Element:  "the replay cache: a hello already accepted is refused stale-hello for a hash and a lookup, before any HPKE, X-Wing, signature or log line",
			play:     playHelloReplay,
		},
		{
			ID: "forged-evidence", Name: "the forged evidence folder",
			Attacker: "makes a root of its own, a \"blackboard\" certificate and a receipt dated three days back, and puts its root.pem beside the receipt",
			Element:  "the verifier's trust anchor comes only from what the verifier names (--root, a fingerprint), never from beside the evidence",
			play:     playForgedEvidence,
		},
		{
			ID: "refusal-flood", Name: "the anonymous refusal flood",
			Attacker: "sends 10,000 bad enrollment requests over hundreds of connections and sources while a student enrolls",
			Element:  "a refusal of a peer that proved nothing is counted in memory, not stored, and logged at most once a second",
			play:     playRefusalFlood,
		},
		{
			ID: "revocation", Name: "revocation: from `revoke` to enforcement",
			Attacker: "holds a student's key and keeps submitting as her once the operator revokes her certificate (keyCompromise)",
			Element:  "the board's watch on the CA: the CA pushes each new CRL and `revoke` returns once the watching boards installed it",
			play:     playRevocation,
		},
	}
}

// RunBoundary plays one boundary row and judges it.
func (l *Lab) RunBoundary(ctx context.Context, b Boundary) *Result {
	start := time.Now()
	r := &Result{ID: b.ID, Name: b.Name, Element: b.Element}
	l.printf("%s: the attacker %s", b.Name, b.Attacker)
	dir := filepath.Join(l.dir, "rows", b.ID)
	var f finding
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		f, err = b.play(ctx, l, dir)
	}
	r.Elapsed = time.Since(start)
	if f != nil {
		r.Evidence = fmt.Sprintf("%+v", f)
	}
	if err != nil {
		r.Verdict, r.Problems = Unexpected, []string{err.Error()}
		r.Outcome = err.Error()
	} else {
		j := f.judge()
		r.Did, r.Detected = j.did, j.detected
		r.conclude(j.succeeded, j.problems, j.outcome)
	}
	if r.Verdict == Defeated {
		r.Evidence = ""
	}
	l.printf("%s: %s (%s)", b.Name, r.Verdict, r.Elapsed.Round(time.Millisecond))
	return r
}

// codeName names a code as the table does: `token-invalid` (22).
func codeName(c wire.Code) string { return fmt.Sprintf("`%s` (%d)", c, uint16(c)) }

// answer is what the CA made of one request: its refusal's code, or the
// certificate it issued.
type answer struct {
	Code   wire.Code         // 0 if issued
	Issued *x509.Certificate // the certificate, if issued
	Err    string            // no answer: why
}

func (a answer) String() string {
	switch {
	case a.Err != "":
		return "no answer (" + a.Err + ")"
	case a.Issued != nil:
		return fmt.Sprintf("ISSUED a certificate (serial %s)", keys.SerialHex(a.Issued.SerialNumber))
	}
	return codeName(a.Code)
}

// dialFrom connects to addr from the loopback address src (any if "").
func dialFrom(ctx context.Context, src, addr string) (*wire.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	wc := wire.NewConn(nc, wire.Options{MaxFrame: 1 << 20, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	wc.SetDeadline(time.Now().Add(20 * time.Second))
	return wc, nil
}

// sendEnroll sends req to the CA on a connection of its own from src, as an
// attacker's own client does, and returns the CA's answer.
func (l *Lab) sendEnroll(ctx context.Context, src string, req *wire.EnrollRequest) answer {
	wc, err := dialFrom(ctx, src, l.ca.Addr)
	if err != nil {
		return answer{Err: err.Error()}
	}
	defer wc.Close()
	if err := wc.WriteMessage(req); err != nil {
		return answer{Err: err.Error()}
	}
	m, err := wc.ReadMessage()
	if err != nil {
		return answer{Err: err.Error()}
	}
	switch v := m.(type) {
	case *wire.Error:
		return answer{Code: v.Code}
	case *wire.EnrollAccepted:
		cert, err := x509.ParseCertificate(v.Certificate)
		if err != nil {
			return answer{Err: "an EnrollAccepted whose certificate does not parse"}
		}
		return answer{Issued: cert}
	}
	return answer{Err: fmt.Sprintf("a %v", m.Type())}
}

// ownCSR makes the attacker's own key and a CSR with CN=name.
func ownCSR(name string) ([]byte, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	return csr, key, err
}

// certs lists the CA's certificates (`pkiboard certs --json`).
func (l *Lab) certs(ctx context.Context) ([]ca.CertView, error) {
	out, err := runCmd(ctx, l.opts.Bin, "--config", l.config, "certs", "--json")
	if err == nil && out.code != 0 {
		err = fmt.Errorf("pkiboard certs: exit %d: %s", out.code, out.stderr)
	}
	if err != nil {
		return nil, err
	}
	var views []ca.CertView
	if err := json.Unmarshal([]byte(out.stdout), &views); err != nil {
		return nil, fmt.Errorf("pkiboard certs --json: %w", err)
	}
	return views, nil
}

// certsOf returns the certificates in views for sid.
func certsOf(views []ca.CertView, sid string) []ca.CertView {
	var out []ca.CertView
	for _, v := range views {
		if v.SID == sid {
			out = append(out, v)
		}
	}
	return out
}

// tokenForms returns a token in every form it could cross the wire in: as
// typed, its secret in base64url, standard base64, hex and raw, and the
// private half of the key derived from it.
func tokenForms(token string) [][]byte {
	forms := [][]byte{[]byte(token)}
	body := strings.TrimPrefix(token, ca.TokenPrefix)
	forms = append(forms, []byte(body))
	if secret, err := base64.RawURLEncoding.DecodeString(body); err == nil {
		forms = append(forms, secret, []byte(base64.StdEncoding.EncodeToString(secret)),
			[]byte(base64.RawStdEncoding.EncodeToString(secret)),
			[]byte(hex.EncodeToString(secret)), []byte(strings.ToUpper(hex.EncodeToString(secret))))
	}
	if key, err := ca.TokenKey(token); err == nil {
		forms = append(forms, key.Seed())
	}
	return forms
}

// The student role's words for a refusal: its own of the board, and the
// other side's (the CA's or the board's).
var (
	weRefusedRe = regexp.MustCompile(`we refused the board \(([a-z0-9-]+)\)`)
	refusedRe   = regexp.MustCompile(`refused \(([a-z0-9-]+)\)`)
	peerCodeRe  = regexp.MustCompile(`peer refused: ([a-z0-9-]+) \(code`)
)

// refusalOf returns the code a student's or a command's output names, "" if
// none.
func refusalOf(stderr string) string {
	for _, re := range []*regexp.Regexp{weRefusedRe, refusedRe, peerCodeRe} {
		if c := firstMatch(re, stderr); c != "" {
			return c
		}
	}
	return ""
}

// firstLine returns the first line of s, trimmed.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

// outcomeOf describes a finished student or command.
func outcomeOf(o output) string {
	if o.code == 0 {
		return "exit 0"
	}
	if c := refusalOf(o.stderr); c != "" {
		return fmt.Sprintf("exit %d, %s", o.code, c)
	}
	return fmt.Sprintf("exit %d: %s", o.code, lastLine(o.stderr))
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// tokenSign returns the token key's public half and its signature over req's
// binding (PROTOCOL.md §4.2), as a client holding the token makes them.
func tokenSign(key ed25519.PrivateKey, req *wire.EnrollRequest) (pub, sig []byte) {
	binding := wire.EnrollBinding(req.Auth, req.Profile, req.SID, req.Root, req.CSR)
	return key.Public().(ed25519.PublicKey), ed25519.Sign(key, binding)
}

// readFile returns a file's content as a string.
func readFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	return string(data), err
}
