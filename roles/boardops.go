package roles

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
)

// boardOps returns the board's operator commands, bound to its store and the
// root it trusts.
func boardOps(st *board.Store, root *x509.Certificate) map[string]adminOp {
	return map[string]adminOp{
		"submissions": func(context.Context, json.RawMessage) (any, error) {
			recs, err := st.List()
			if err != nil {
				return nil, err
			}
			views := make([]board.SubmissionView, len(recs))
			for i := range recs {
				views[i] = recs[i].View()
			}
			return views, nil
		},
		"verify": func(_ context.Context, raw json.RawMessage) (any, error) {
			var args struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, err
			}
			rec, err := st.Get(args.ID)
			if err != nil {
				return nil, err
			}
			return st.Verify(rec, root), nil
		},
	}
}

// callBoard runs a board operator command against the installation cfg
// describes: through the running board, or on its data directory.
func callBoard(ctx context.Context, cfg *config.Config, command string, args, out any) error {
	return callAdmin(ctx, cfg.Board.DataDir, command, args, out, func() (map[string]adminOp, func() error, error) {
		st, err := board.Open(cfg.Board.DataDir)
		if err != nil {
			return nil, nil, err
		}
		root, err := keys.ReadCertificate(filepath.Join(cfg.Board.DataDir, ca.RootFile))
		if err != nil && cfg.Board.RootFile != "" {
			root, err = keys.ReadCertificate(cfg.Board.RootFile)
		}
		if err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("the board's root certificate: %w", err)
		}
		return boardOps(st, root), st.Close, nil
	})
}

// ListSubmissions prints what the board holds, as a table or JSON.
func ListSubmissions(ctx context.Context, cfg *config.Config, asJSON bool, w io.Writer) error {
	var views []board.SubmissionView
	if err := callBoard(ctx, cfg, "submissions", struct{}{}, &views); err != nil {
		return fmt.Errorf("submissions: %w", err)
	}
	if asJSON {
		return printJSON(w, views)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tSID\tNAME\tSIZE\tSHA-256\tSUITE\tRECEIVED")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s…\t%s\t%s\n", v.ID, v.SID, v.Name, v.Size, v.SHA256[:16], v.Suite, v.Received.UTC().Format(time.DateTime))
	}
	return tw.Flush()
}

// VerifySubmission checks a stored submission's evidence offline and prints
// the verdict. It fails unless the evidence holds.
func VerifySubmission(ctx context.Context, cfg *config.Config, id string, w io.Writer) error {
	var ev board.Evidence
	if err := callBoard(ctx, cfg, "verify", map[string]string{"id": id}, &ev); err != nil {
		return fmt.Errorf("submissions --verify %s: %w", id, err)
	}
	s := ev.Submission
	if ev.Problem != "" {
		return fmt.Errorf("submission %s from %s does NOT verify: %s", s.ID, s.SID, ev.Problem)
	}
	fmt.Fprintf(w, "submission %s from %s verifies: %s (%d bytes, SHA-256 %s) was signed by %s, certificate %s issued by %s, received %s\n",
		s.ID, s.SID, s.Name, s.Size, s.SHA256, ev.SignedBy, s.Serial, ev.Issuer, s.Received.UTC().Format(time.RFC3339))
	return nil
}
