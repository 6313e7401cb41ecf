package attacklab

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// attackerSource is the loopback address the attacker's own requests come
// from, apart from the students' 127.0.0.1.
const attackerSource = "127.0.1.1"

// runStudent runs a student of the row: enroll with a fresh token through the
// CA at caAddr, then submit to the board at boardAddr. dataDir keeps her
// identity (and the CRL numbers she has seen) between runs of the row.
func (l *Lab) runStudent(ctx context.Context, dir, dataDir, sid, caAddr, boardAddr string, withToken bool) (output, error) {
	cfg, err := l.studentConfig(dir, dataDir)
	if err != nil {
		return output{}, err
	}
	var env []string
	if withToken {
		if env, err = l.tokenEnv(ctx, sid); err != nil {
			return output{}, err
		}
	}
	return runCmdIn(ctx, "", env, l.opts.Bin, "--config", cfg, "--role=student", "--ids", sid,
		"--ca-addr", caAddr, "--board-addr", boardAddr)
}

// studentSerial returns the serial of the certificate a row's student saved.
func studentSerial(dir, dataDir, sid string) string {
	cert, err := keys.ReadCertificate(filepath.Join(dir, dataDir, sid, ca.CertFile))
	if err != nil {
		return ""
	}
	return keys.SerialHex(cert.SerialNumber)
}

// sniffFinding is what the passive token sniffing row observed.
type sniffFinding struct {
	SID      string
	Student  output // her enrollment and submission, through the observed wire
	Scanned  int64  // bytes the observer searched: all it recorded
	Found    int    // occurrences of her token, in any form
	Captured bool   // it saw her EnrollRequest, with a token
	Attempt  answer // the CA's answer to her request with the observer's CSR
	Certs    int    // certificates the CA holds for her SID afterwards
}

// playTokenSniff: a student enrolls through the observed wire; the observer
// searches all it recorded for her token, then sends her request again with
// a CSR of its own.
func playTokenSniff(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &sniffFinding{SID: "alice-sniff"}
	var err error
	if f.Student, err = l.runStudent(ctx, dir, "student", f.SID, l.wire.Addr(), l.board.Addr, true); err != nil {
		return f, err
	}
	token, err := l.lastToken(f.SID)
	if err != nil {
		return f, err
	}
	seen := l.wire.observe()
	f.Scanned, f.Found = seen.bytes, seen.count(tokenForms(token))
	reqs := seen.enrollRequests(f.SID, wire.AuthToken)
	if f.Captured = len(reqs) > 0; f.Captured {
		csr, _, err := ownCSR(f.SID)
		if err != nil {
			return f, err
		}
		forged := *reqs[0]
		forged.CSR = csr
		f.Attempt = l.sendEnroll(ctx, attackerSource, &forged)
	}
	views, err := l.certs(ctx)
	f.Certs = len(certsOf(views, f.SID))
	return f, err
}

func (f *sniffFinding) judge() (j judgement) {
	j.did = fmt.Sprintf("recorded the wire to the CA while %s enrolled (%d bytes, her EnrollRequest among them); searched them for her token (as typed, its secret in base64url, base64, hex and raw, the derived private key); sent her EnrollRequest again — her token_key and signature — with a CSR of its own",
		f.SID, f.Scanned)
	j.detected = "the CA: " + codeName(wire.CodeTokenInvalid)
	j.outcome = fmt.Sprintf("token found 0 times in %d bytes scanned; the forged request refused %s; she enrolled and submitted (%s); %d certificate for her SID",
		f.Scanned, codeName(f.Attempt.Code), outcomeOf(f.Student), f.Certs)
	if f.Found > 0 {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the token was found %d times in what crossed the wire", f.Found))
	}
	if f.Attempt.Issued != nil {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the CA issued the observer a certificate for %s: %s", f.SID, f.Attempt))
	}
	switch {
	case !f.Captured:
		j.problems = append(j.problems, fmt.Sprintf("the observer saw no EnrollRequest of %s with a token", f.SID))
	case f.Attempt.Issued == nil && f.Attempt.Code != wire.CodeTokenInvalid:
		j.problems = append(j.problems, fmt.Sprintf("the forged request got %s, not token-invalid", f.Attempt))
	}
	if f.Student.code != 0 {
		j.problems = append(j.problems, fmt.Sprintf("the student did not enroll and submit: %s", outcomeOf(f.Student)))
	}
	if f.Certs != 1 && f.Attempt.Issued == nil {
		j.problems = append(j.problems, fmt.Sprintf("the CA holds %d certificates for %s, want 1", f.Certs, f.SID))
	}
	return j
}

// raceFinding is what the token theft by delay row observed.
type raceFinding struct {
	SID       string
	Student   output        // her enrollment and submission, through the proxy
	Held      time.Duration // how long the proxy held her request back
	Captured  bool          // the proxy held her EnrollRequest
	Attempt   answer        // the CA's answer to the proxy's own request
	Serial    string        // the serial of the certificate she saved
	Certs     []ca.CertView // the CA's certificates for her SID
	Forwarded bool          // her request was forwarded after the attacker's
}

// raceHold is how long the proxy holds a student's request back.
const raceHold = 300 * time.Millisecond

// playTokenRace: a student enrolls through a proxy that holds her request
// back, sends its own first with her token key and signature and its own
// CSR, then forwards hers.
func playTokenRace(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &raceFinding{SID: "alice-race"}
	hold := func(p []byte) {
		req, err := wire.Expect[*wire.EnrollRequest](wire.Unmarshal(p))
		if err != nil || req.SID != f.SID || req.Auth != wire.AuthToken {
			return // her Fetch of the root, or another request: relayed at once
		}
		start := time.Now()
		f.Captured = true
		csr, _, err := ownCSR(f.SID)
		if err != nil {
			return
		}
		forged := *req
		forged.CSR = csr
		f.Attempt = l.sendEnroll(ctx, attackerSource, &forged)
		time.Sleep(raceHold - time.Since(start))
		f.Held, f.Forwarded = time.Since(start), true
	}
	proxy, err := newTap(l.ca.Addr, hold)
	if err != nil {
		return f, err
	}
	f.Student, err = l.runStudent(ctx, dir, "student", f.SID, proxy.Addr(), l.board.Addr, true)
	proxy.Close() // the hook's writes happen before her answer: they are done
	if err != nil {
		return f, err
	}
	f.Serial = studentSerial(dir, "student", f.SID)
	views, err := l.certs(ctx)
	f.Certs = certsOf(views, f.SID)
	return f, err
}

func (f *raceFinding) judge() (j judgement) {
	j.did = fmt.Sprintf("held %s's EnrollRequest back for %v and sent its own first: her token_key and signature, with its own CSR; then forwarded hers",
		f.SID, f.Held.Round(time.Millisecond))
	j.detected = "the CA: " + codeName(wire.CodeTokenInvalid)
	j.outcome = fmt.Sprintf("the attacker's request refused %s; then she was issued her certificate (serial %s) and submitted (%s); the CA holds %d certificate for her SID",
		codeName(f.Attempt.Code), f.Serial, outcomeOf(f.Student), len(f.Certs))
	if f.Attempt.Issued != nil {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the CA issued the attacker a certificate for %s with her token: %s", f.SID, f.Attempt))
	}
	if c := refusalOf(f.Student.stderr); f.Student.code != 0 && c == wire.CodeTokenUsed.String() {
		j.succeeded = append(j.succeeded, "her token was spent by the attacker: she got token-used")
	}
	switch {
	case !f.Captured:
		j.problems = append(j.problems, fmt.Sprintf("the proxy saw no EnrollRequest of %s with a token", f.SID))
	case f.Attempt.Issued == nil && f.Attempt.Code != wire.CodeTokenInvalid:
		j.problems = append(j.problems, fmt.Sprintf("the attacker's request got %s, not token-invalid", f.Attempt))
	}
	if f.Student.code != 0 {
		j.problems = append(j.problems, fmt.Sprintf("the student did not enroll and submit: %s", outcomeOf(f.Student)))
	}
	if len(f.Certs) != 1 || f.Certs[0].Serial != f.Serial {
		j.problems = append(j.problems, fmt.Sprintf("the CA holds %v for %s; want her certificate alone (serial %q)", f.Certs, f.SID, f.Serial))
	}
	return j
}

// rogueBoardFinding is what the rogue board row observed.
type rogueBoardFinding struct {
	Board      string   // the board's name
	Scanned    int64    // bytes the observer recorded on the board's wire
	Found      int      // occurrences of the board token, in any form
	Captured   bool     // it saw the board's EnrollRequest, with a token
	Replay     answer   // the captured token key and signature with the attacker's CSR
	Spent      answer   // the stolen board-enroll.token with the attacker's CSR
	TokenFrom  string   // where the spent token came from
	Others     []string // board certificates at the CA that no board of the lab held
	BoardCerts int      // certificates for the board's name at the CA
}

// playRogueBoard: the board's enrollment crossed the observed wire when the
// lab started; the attacker searches it for the board token, asks for a
// second board certificate with what it captured and its own CSR, then with
// the board token file itself, and the CA's certificates are counted.
func playRogueBoard(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &rogueBoardFinding{Board: "blackboard"}
	seen := l.wire.observe()
	f.Scanned = seen.bytes
	f.Found = seen.count(tokenForms(l.boardToken))
	csr, _, err := ownCSR(f.Board)
	if err != nil {
		return f, err
	}
	if reqs := seen.enrollRequests(f.Board, wire.AuthToken); len(reqs) > 0 {
		f.Captured = true
		forged := *reqs[0]
		forged.CSR = csr
		f.Replay = l.sendEnroll(ctx, attackerSource, &forged)
	}
	// The file itself, stolen: the token it holds was spent on the board's
	// first certificate.
	token, from := l.boardToken, "as the CA's first start wrote it"
	if data, err := readFile(l.path(caDataDir, ca.BoardTokenFile)); err == nil && strings.TrimSpace(data) != "" {
		token, from = strings.TrimSpace(data), "read from "+filepath.Join(caDataDir, ca.BoardTokenFile)
	}
	f.TokenFrom = from
	key, err := ca.TokenKey(token)
	if err != nil {
		return f, err
	}
	req := &wire.EnrollRequest{Version: wire.ProtocolVersion, Profile: wire.ProfileBoard, SID: f.Board, CSR: csr,
		Root: keys.Fingerprint(l.root), Auth: wire.AuthToken}
	req.TokenKey, req.Signature = tokenSign(key, req)
	f.Spent = l.sendEnroll(ctx, attackerSource, req)

	views, err := l.certs(ctx)
	board := certsOf(views, f.Board)
	f.BoardCerts = len(board)
	for _, v := range board {
		if !contains(l.boardSerials, v.Serial) {
			f.Others = append(f.Others, v.Serial)
		}
	}
	return f, err
}

func (f *rogueBoardFinding) judge() (j judgement) {
	j.did = fmt.Sprintf("captured the board's enrollment on the wire (%d bytes observed); searched them for the board token; asked for a second %q certificate with the captured token_key and signature and its own CSR; then with the token in board-enroll.token (%s) and its own CSR",
		f.Scanned, f.Board, f.TokenFrom)
	j.detected = fmt.Sprintf("the CA: %s for the captured request, %s for the spent token", codeName(wire.CodeTokenInvalid), codeName(wire.CodeTokenUsed))
	j.outcome = fmt.Sprintf("board token found 0 times; refusals %s and %s; %d certificate for %q at the CA, the real board's",
		codeName(f.Replay.Code), codeName(f.Spent.Code), f.BoardCerts, f.Board)
	if f.Found > 0 {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the board token was found %d times in what crossed the wire", f.Found))
	}
	for _, a := range []answer{f.Replay, f.Spent} {
		if a.Issued != nil {
			j.succeeded = append(j.succeeded, fmt.Sprintf("the CA issued the attacker a certificate for %q: %s", f.Board, a))
		}
	}
	if len(f.Others) > 0 {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the CA holds board certificates no board of the lab held: %v", f.Others))
	}
	switch {
	case !f.Captured:
		j.problems = append(j.problems, "the observer saw no board EnrollRequest with a token")
	case f.Replay.Issued == nil && f.Replay.Code != wire.CodeTokenInvalid:
		j.problems = append(j.problems, fmt.Sprintf("the captured request with the attacker's CSR got %s, not token-invalid", f.Replay))
	}
	if f.Spent.Issued == nil && f.Spent.Code != wire.CodeTokenUsed {
		j.problems = append(j.problems, fmt.Sprintf("the spent board token got %s, not token-used", f.Spent))
	}
	if f.BoardCerts == 0 {
		j.problems = append(j.problems, "the CA lists no board certificate at all")
	}
	return j
}
