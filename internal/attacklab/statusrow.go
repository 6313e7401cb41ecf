package attacklab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// staleFinding is what the stale status row observed.
type staleFinding struct {
	Serial    string    // the board certificate stolen, then revoked
	StolenCRL uint64    // the CRL number of the stolen status
	StolenEnd time.Time // its next_update
	Revoke    output    // `pkiboard revoke` of the stolen certificate (keyCompromise)
	NewSerial string    // the board's certificate once it enrolled again

	Real       output    // the student's session with the real board, enrolled again
	Seen       uint64    // the highest CRL number she has seen since
	SeenRogue  output    // her session with the rogue board
	SeenAt     time.Time // when it began
	Fresh      output    // a new student's session with the rogue board, after the stolen status expired
	FreshAt    time.Time // when it began
	RogueRead  int       // bytes of submissions the rogue board read
	RogueActed bool      // the rogue board played the board at least once
	AdvExit    int
}

// playStaleStatus: the attacker copies the board's key, certificate and
// status.bin; the operator revokes the certificate (keyCompromise) and
// enrolls the board again; the adversary plays the board with what was
// stolen. A student who has since seen the real board refuses it, and once
// the stolen status expires every student does.
func playStaleStatus(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &staleFinding{}
	stolen := filepath.Join(dir, "stolen")
	if err := os.MkdirAll(stolen, 0o700); err != nil {
		return f, err
	}
	// The attacker takes the status as soon as the board has a new one, so
	// that the row has its whole validity to show the student's memory of
	// CRL numbers before the status expires.
	if err := l.awaitNewStatus(ctx); err != nil {
		return f, err
	}
	for _, name := range []string{ca.KeyFile, ca.CertFile, board.StatusFile} {
		data, err := os.ReadFile(l.path(boardDataDir, name))
		if err != nil {
			return f, fmt.Errorf("stealing the board's %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(stolen, name), data, 0o600); err != nil {
			return f, err
		}
	}
	cert, err := keys.ReadCertificate(filepath.Join(stolen, ca.CertFile))
	if err != nil {
		return f, err
	}
	f.Serial = keys.SerialHex(cert.SerialNumber)
	data, err := os.ReadFile(filepath.Join(stolen, board.StatusFile))
	if err != nil {
		return f, err
	}
	st, err := wire.ParseBoardStatus(data)
	if err != nil {
		return f, fmt.Errorf("the stolen status: %w", err)
	}
	f.StolenCRL, f.StolenEnd = st.CRLNumber, time.Unix(int64(st.NextUpdate), 0)

	// The operator learns of the theft: revoke, and enroll the board again
	// with a new key and a new board token.
	if f.Revoke, err = runCmd(ctx, l.opts.Bin, "--config", l.config, "revoke", "--serial", f.Serial, "--reason", "keyCompromise"); err != nil {
		return f, err
	}
	if err := l.reenrollBoard(ctx); err != nil {
		return f, err
	}
	f.NewSerial = l.boardSerials[len(l.boardSerials)-1]

	adv, err := startProc("adversary", l.opts.Bin, "--config", l.config, "--role=adversary", "--listen", "127.0.0.1:0",
		"--attack", "impersonate-board", "--cert", filepath.Join(stolen, ca.CertFile), "--key", filepath.Join(stolen, ca.KeyFile),
		"--status", filepath.Join(stolen, board.StatusFile))
	if err != nil {
		return f, err
	}
	defer adv.Kill()

	const sid, fresh = "alice-stale", "bob-stale"
	if f.Real, err = l.runStudent(ctx, dir, "student", sid, l.ca.Addr, l.board.Addr, true); err != nil {
		return f, err
	}
	f.Seen = crlSeen(filepath.Join(dir, "student"))
	f.SeenAt = time.Now()
	if f.SeenRogue, err = l.runStudent(ctx, dir, "student", sid, l.ca.Addr, adv.Addr, false); err != nil {
		return f, err
	}
	// Every student, once the stolen status has expired (next_update is in
	// whole seconds; the student compares her clock with it).
	if wait := time.Until(f.StolenEnd.Add(1100 * time.Millisecond)); wait > 0 {
		l.printf("%s: waiting %v for the stolen status to expire", "stale-status", wait.Round(100*time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return f, ctx.Err()
		}
	}
	f.FreshAt = time.Now()
	if f.Fresh, err = l.runStudent(ctx, dir, "fresh", fresh, l.ca.Addr, adv.Addr, true); err != nil {
		return f, err
	}
	adv.WaitFor(ctx, 0, finishTimeout, func(r record) bool { return r.Msg() == "ATTACK impersonate-board: finished" && r.Str("sid") == fresh })
	f.AdvExit = stop(adv)
	for _, r := range adv.Since(0) {
		f.RogueRead += r.Num("plaintext_read")
		f.RogueActed = f.RogueActed || r.Flag("action")
	}
	return f, nil
}

// awaitNewStatus waits until the board keeps a new status in its data
// directory: the CA pushes one when the last is half-way through.
func (l *Lab) awaitNewStatus(ctx context.Context) error {
	path := l.path(boardDataDir, board.StatusFile)
	old, _ := os.ReadFile(path)
	deadline := time.Now().Add(statusValidity)
	for time.Now().Before(deadline) {
		if now, err := os.ReadFile(path); err == nil && len(now) > 0 && !bytes.Equal(now, old) {
			return nil
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("the board kept no new status in %v (ca.status_validity %v: the CA pushes one half-way through)", statusValidity, statusValidity)
}

// reenrollBoard enrolls the board again after its certificate was revoked,
// as an operator does: stop it, remove its compromised key, certificate and
// status, give it a new one-time board token, and start it.
func (l *Lab) reenrollBoard(ctx context.Context) error {
	if code := stop(l.board); code != 0 {
		return fmt.Errorf("the board exited with %d", code)
	}
	l.board = nil
	for _, name := range []string{ca.KeyFile, ca.CertFile, board.StatusFile, ca.NextKeyFile} {
		if err := os.Remove(l.path(boardDataDir, name)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	token, err := l.token(ctx, "--board")
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.path(caDataDir, ca.BoardTokenFile), []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	return l.startBoard()
}

// crlSeen returns the highest CRL number the student's data directory
// remembers, under any root (0 if none).
func crlSeen(dataDir string) uint64 {
	data, err := os.ReadFile(filepath.Join(dataDir, "status.json"))
	if err != nil {
		return 0
	}
	var f struct {
		Highest map[string]uint64 `json:"highest_crl_number"`
	}
	if json.Unmarshal(data, &f) != nil {
		return 0
	}
	var n uint64
	for _, v := range f.Highest {
		n = max(n, v)
	}
	return n
}

// The student's sentences for the two reasons of stale-status.
const (
	olderThanSeen = "you have already seen a status of CRL number"
	outOfTime     = "your time is"
)

func (f *staleFinding) judge() (j judgement) {
	j.did = fmt.Sprintf("stole the board's key, certificate (serial %s) and status.bin (CRL number %d, valid until %s); after the board's revocation (keyCompromise) and its enrollment anew (serial %s), played the board with them",
		f.Serial, f.StolenCRL, f.StolenEnd.UTC().Format(time.TimeOnly), f.NewSerial)
	j.detected = "the student: " + codeName(wire.CodeStaleStatus)
	j.outcome = fmt.Sprintf("a student who had seen the real board since (CRL number %d seen, %d stapled) refused it %s; after the stolen status expired, a new student refused it %s; nothing read",
		f.Seen, f.StolenCRL, refusalOf(f.SeenRogue.stderr), refusalOf(f.Fresh.stderr))
	if f.RogueRead > 0 {
		j.succeeded = append(j.succeeded, fmt.Sprintf("the rogue board read %d bytes of a submission", f.RogueRead))
	}
	for _, s := range []struct {
		who    string
		o      output
		at     time.Time
		reason string
	}{
		{"the student who had seen a newer status", f.SeenRogue, f.SeenAt, olderThanSeen},
		{"the new student after the status expired", f.Fresh, f.FreshAt, outOfTime},
	} {
		switch c := refusalOf(s.o.stderr); {
		case s.o.code == 0:
			j.succeeded = append(j.succeeded, s.who+" submitted to the rogue board")
		case c != wire.CodeStaleStatus.String():
			j.problems = append(j.problems, fmt.Sprintf("%s: %s, not the student's stale-status", s.who, outcomeOf(s.o)))
		case !strings.Contains(s.o.stderr, s.reason):
			j.problems = append(j.problems, fmt.Sprintf("%s refused stale-status for another reason than %q: %s", s.who, s.reason, lastLine(s.o.stderr)))
		}
	}
	if !f.SeenAt.Before(f.StolenEnd) {
		j.problems = append(j.problems, "the stolen status had expired before the student who had seen a newer one met the rogue board: the row did not test the CRL number")
	}
	if f.Revoke.code != 0 {
		j.problems = append(j.problems, fmt.Sprintf("pkiboard revoke of the board's certificate: %s", outcomeOf(f.Revoke)))
	}
	if f.Real.code != 0 {
		j.problems = append(j.problems, fmt.Sprintf("the real board, enrolled again, did not serve the student: %s", outcomeOf(f.Real)))
	}
	if f.Seen <= f.StolenCRL {
		j.problems = append(j.problems, fmt.Sprintf("the student had seen CRL number %d, not above the stolen status's %d", f.Seen, f.StolenCRL))
	}
	if !f.RogueActed {
		j.problems = append(j.problems, "the rogue board never played the board")
	}
	if f.AdvExit != 0 {
		j.problems = append(j.problems, fmt.Sprintf("the adversary exited with %d after SIGTERM", f.AdvExit))
	}
	return j
}
