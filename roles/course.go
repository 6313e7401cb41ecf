package roles

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"go.uber.org/zap"

	"pkiboard/board"
	"pkiboard/internal/config"
)

// courseAssignments returns the assignments the board's configuration
// defines now: those of board.assignments_file, or the implicit lab.
func courseAssignments(b *config.BoardConfig) ([]board.Assignment, error) {
	if b.AssignmentsFile == "" {
		return []board.Assignment{board.LabAssignmentOf(int64(b.MaxSubmission))}, nil
	}
	data, err := os.ReadFile(b.AssignmentsFile)
	if err != nil {
		return nil, fmt.Errorf("board.assignments_file: %w", err)
	}
	list, err := board.ParseAssignments(data, int64(b.MaxSubmission))
	if err != nil {
		return nil, fmt.Errorf("the assignments file %s, %w", b.AssignmentsFile, err)
	}
	return list, nil
}

// courseSource returns where the running board takes its assignments
// from: board.assignments_file, loaded now (an invalid file is an error
// that names its line) and read again whenever it changes; nil without one
// (the board serves the lab, board.Lab).
func courseSource(b *config.BoardConfig, log *zap.Logger) (func() []board.Assignment, error) {
	if b.AssignmentsFile == "" {
		return nil, nil
	}
	f, err := board.LoadAssignments(b.AssignmentsFile, int64(b.MaxSubmission), log)
	if err != nil {
		return nil, err
	}
	return f.Current, nil
}

// findAssignment returns the assignment id of the board's configuration, or
// an error that lists the ids there are.
func findAssignment(b *config.BoardConfig, id string) (*board.Assignment, error) {
	list, err := courseAssignments(b)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(list))
	for i := range list {
		if list[i].ID == id {
			return &list[i], nil
		}
		ids = append(ids, list[i].ID)
	}
	from := "board.assignments_file"
	if b.AssignmentsFile == "" {
		from = "the implicit assignment (no board.assignments_file)"
	}
	return nil, fmt.Errorf("the board serves no assignment %q; %s has %s: check --assignment", id, from, strings.Join(ids, ", "))
}

// staffName is who runs a staff command, for the audit: as, or else the OS
// user.
func staffName(as string) (string, error) {
	if as != "" {
		return as, nil
	}
	u, err := user.Current()
	if err != nil || u.Username == "" {
		return "", fmt.Errorf("cannot tell which user runs this (%v): name yourself with --as NAME", err)
	}
	return u.Username, nil
}

// ExtendArgs are the options of `pkiboard extend`.
type ExtendArgs struct {
	Assignment string `json:"assignment"`
	SID        string `json:"sid"`
	Until      string `json:"until"` // RFC 3339 with a zone
	Reason     string `json:"reason"`
	As         string `json:"as"` // the staff member; the OS user if empty
}

// ExtendResult is what `pkiboard extend` did: the terms that now apply to
// the student.
type ExtendResult struct {
	Assignment string    `json:"assignment"`
	SID        string    `json:"sid"`
	Due        time.Time `json:"due"`
	Lock       time.Time `json:"lock"` // zero: no lock
	By         string    `json:"by"`
}

// ActivateArgs are the options of `pkiboard activate`.
type ActivateArgs struct {
	Assignment string `json:"assignment"`
	SID        string `json:"sid"`
	Version    int    `json:"version"`
	As         string `json:"as"`
}

// boardOps returns the board's operator commands that write, bound to st:
// the daemon serves them on its socket, and the command runs them itself
// when no board runs. Reading needs neither: the listings open board.db
// read-only.
func boardOps(b *config.BoardConfig, st *board.Store) map[string]adminOp {
	return map[string]adminOp{
		"extend": func(_ context.Context, raw json.RawMessage) (any, error) {
			var args ExtendArgs
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, err
			}
			a, err := findAssignment(b, args.Assignment)
			if err != nil {
				return nil, err
			}
			until, err := ParseUntil(args.Until)
			if err != nil {
				return nil, err
			}
			if !a.Opens.IsZero() && !until.After(a.Opens) {
				return nil, fmt.Errorf("--until %s is not after assignment %s opens (%s): give a later time", args.Until, a.ID, a.Opens.Format(time.RFC3339))
			}
			e := board.Extension{Assignment: a.ID, SID: args.SID, Until: until, Reason: args.Reason, GrantedBy: args.As}
			if err := st.Extend(e); err != nil {
				return nil, err
			}
			t := a.TermsFor(&e)
			return ExtendResult{Assignment: a.ID, SID: args.SID, Due: t.Due, Lock: t.Lock, By: args.As}, nil
		},
		"activate": func(_ context.Context, raw json.RawMessage) (any, error) {
			var args ActivateArgs
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, err
			}
			if err := st.Activate(args.Assignment, args.SID, args.Version, args.As); err != nil {
				return nil, err
			}
			return args, nil
		},
	}
}

// callBoard runs a board operator command against the installation cfg
// describes: through the running board's socket, or else on its store,
// opened here.
func callBoard(ctx context.Context, cfg *config.Config, command string, args, out any) error {
	b := &cfg.Board
	return callAdmin(ctx, b.DataDir, command, args, out, func() (map[string]adminOp, func() error, error) {
		if err := checkDataDir("board", "board.data_dir", b.DataDir); err != nil {
			return nil, nil, err
		}
		st, err := board.Open(b.DataDir)
		if err != nil {
			return nil, nil, err
		}
		return boardOps(b, st), st.Close, nil
	})
}

// ParseUntil reads extend --until: a time in RFC 3339, with its zone.
func ParseUntil(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--until %q is not RFC 3339 with a zone: write it like 2026-11-29T23:59:00+08:00", s)
	}
	return t, nil
}

// Extend grants a student an extension of an assignment (`pkiboard extend`),
// audited under the staff member's name, and prints the terms that now apply
// to her.
func Extend(ctx context.Context, cfg *config.Config, args ExtendArgs, w io.Writer) error {
	var err error
	if args.As, err = staffName(args.As); err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	var res ExtendResult
	if err := callBoard(ctx, cfg, "extend", args, &res); err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	lock := "no lock time"
	if !res.Lock.IsZero() {
		lock = "locks at " + res.Lock.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "extended %s for %s: due %s, %s (granted by %s, audited)\n", res.Assignment, res.SID, res.Due.Format(time.RFC3339), lock, res.By)
	return nil
}

// Activate marks which of a student's versions counts (`pkiboard
// activate`), audited under the staff member's name.
func Activate(ctx context.Context, cfg *config.Config, args ActivateArgs, w io.Writer) error {
	var err error
	if args.As, err = staffName(args.As); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	var res ActivateArgs
	if err := callBoard(ctx, cfg, "activate", args, &res); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	fmt.Fprintf(w, "version %d of %s's %s is active (set by %s, audited) until she submits again\n", res.Version, res.SID, res.Assignment, res.As)
	return nil
}
