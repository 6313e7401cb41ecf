package attacklab

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"pkiboard/wire"
)

// revokeLine is what `pkiboard revoke` prints.
var revokeLine = regexp.MustCompile(`CRL (\d+) issued; (\d+) of (\d+) watching boards installed it`)

// enforcementTarget is the most seconds from `revoke` to enforcement that
// issue 12 allows.
const enforcementTarget = 2 * time.Second

// revocationFinding is what the revocation row observed.
type revocationFinding struct {
	SID       string
	Before    output        // her session before the revocation
	Revoke    output        // `pkiboard revoke --reason keyCompromise`
	Took      time.Duration // until revoke returned
	After     output        // her next session, once revoke returned
	CRL       string        // the number of the CRL revoke issued
	Installed int           // watching boards that installed it before revoke returned
	Watching  int           // boards watching
}

// playRevocation revokes a student (keyCompromise) whose certificate works,
// times `pkiboard revoke` — which returns once the boards watching the CA
// have installed the new CRL — and tries her next session at once.
func playRevocation(ctx context.Context, l *Lab, dir string) (finding, error) {
	f := &revocationFinding{SID: "carol-revoked"}
	var err error
	if f.Before, err = l.runStudent(ctx, dir, "student", f.SID, l.ca.Addr, l.board.Addr, true); err != nil {
		return f, err
	}
	start := time.Now()
	f.Revoke, err = runCmd(ctx, l.opts.Bin, "--config", l.config, "revoke", "--sid", f.SID, "--reason", "keyCompromise")
	f.Took = time.Since(start)
	if err != nil {
		return f, err
	}
	if m := revokeLine.FindStringSubmatch(f.Revoke.stdout); m != nil {
		f.CRL = m[1]
		f.Installed, _ = strconv.Atoi(m[2])
		f.Watching, _ = strconv.Atoi(m[3])
	}
	f.After, err = l.runStudent(ctx, dir, "student", f.SID, l.ca.Addr, l.board.Addr, false)
	return f, err
}

func (f *revocationFinding) judge() (j judgement) {
	j.did = fmt.Sprintf("%s submitted; the operator revoked her certificate (keyCompromise); she tried again as soon as `revoke` returned", f.SID)
	j.detected = "the board: " + codeName(wire.CodeCertRevoked)
	j.outcome = fmt.Sprintf("%.3f s from `revoke` to enforcement: it returned with CRL %s installed by %d of %d watching boards, and her next session was refused (%s); target < %v, version 1: up to board.crl_refresh (1 min)",
		f.Took.Seconds(), f.CRL, f.Installed, f.Watching, outcomeOf(f.After), enforcementTarget)
	if f.After.code == 0 {
		j.succeeded = append(j.succeeded, fmt.Sprintf("%s submitted after `revoke` returned", f.SID))
	}
	if f.Before.code != 0 {
		j.problems = append(j.problems, fmt.Sprintf("her session before the revocation failed: %s", outcomeOf(f.Before)))
	}
	switch {
	case f.Revoke.code != 0:
		j.problems = append(j.problems, fmt.Sprintf("pkiboard revoke: %s", outcomeOf(f.Revoke)))
	case f.CRL == "":
		j.problems = append(j.problems, fmt.Sprintf("pkiboard revoke printed %q", firstLine(f.Revoke.stdout)))
	case f.Watching < 1 || f.Installed != f.Watching:
		j.problems = append(j.problems, fmt.Sprintf("%d of %d watching boards installed the CRL before revoke returned", f.Installed, f.Watching))
	}
	if f.After.code != 0 && refusalOf(f.After.stderr) != wire.CodeCertRevoked.String() {
		j.problems = append(j.problems, fmt.Sprintf("her next session failed otherwise than cert-revoked: %s", outcomeOf(f.After)))
	}
	if f.Took >= enforcementTarget {
		j.problems = append(j.problems, fmt.Sprintf("revoke took %v, not under %v", f.Took.Round(time.Millisecond), enforcementTarget))
	}
	return j
}
