package roles

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
	"pkiboard/session"
)

// SubmissionView is one stored submission as `pkiboard submissions` shows it.
type SubmissionView struct {
	ID       string    `json:"id"`
	SID      string    `json:"sid"`
	Serial   string    `json:"serial"` // the student certificate's, hex
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"` // hex
	Suite    string    `json:"suite"`
	Peer     string    `json:"peer"`
	Received time.Time `json:"received"`
	Resumed  int64     `json:"resumed_from,omitempty"`
}

// Evidence is the outcome of checking a stored submission offline.
type Evidence struct {
	Submission SubmissionView `json:"submission"`
	ContentOK  bool           `json:"content_ok"` // the stored bytes have the recorded SHA-256
	SignedBy   string         `json:"signed_by"`  // the student certificate's subject
	Issuer     string         `json:"issuer"`     // who issued it
	Problem    string         `json:"problem,omitempty"`
}

func submissionView(r *board.Record) SubmissionView {
	return SubmissionView{
		ID: r.ID, SID: r.SID, Serial: hex.EncodeToString(r.Serial), Name: r.Name, Size: r.Size,
		SHA256: hex.EncodeToString(r.SHA256[:]), Suite: r.Suite, Peer: r.Peer, Received: r.Received,
		Resumed: r.Resumed,
	}
}

// boardOps returns the board's operator commands, bound to its store and the
// root it trusts.
func boardOps(st *board.Store, root *x509.Certificate) map[string]adminOp {
	return map[string]adminOp{
		"submissions": func(context.Context, json.RawMessage) (any, error) {
			recs, err := st.List()
			if err != nil {
				return nil, err
			}
			views := make([]SubmissionView, len(recs))
			for i := range recs {
				views[i] = submissionView(&recs[i])
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
			return verifyEvidence(st, rec, root), nil
		},
	}
}

// verifyEvidence checks, with the root alone, that the stored content is what
// the student signed: the content's SHA-256, the student's chain at the time
// of receipt, and the signature over the submission statement.
func verifyEvidence(st *board.Store, rec *board.Record, root *x509.Certificate) Evidence {
	ev := Evidence{Submission: submissionView(rec)}
	sum, err := fileSHA256(st.ContentPath(rec))
	switch {
	case err != nil:
		ev.Problem = fmt.Sprintf("cannot read the stored content: %v", err)
		return ev
	case sum != rec.SHA256:
		ev.Problem = "the stored content does not have the SHA-256 the student signed: it was altered after it was stored"
		return ev
	}
	ev.ContentOK = true
	chain := make([]*x509.Certificate, 0, len(rec.StudentChain))
	for _, der := range rec.StudentChain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			ev.Problem = fmt.Sprintf("stored certificate: %v", err)
			return ev
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		ev.Problem = "no student certificate stored"
		return ev
	}
	ev.SignedBy, ev.Issuer = chain[0].Subject.String(), chain[0].Issuer.String()
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if err := session.VerifyStatement(chain, pool, rec.Received, rec.Transcript, rec.SID, rec.Name, uint64(rec.Size), rec.SHA256, rec.Signature); err != nil {
		ev.Problem = err.Error()
	}
	return ev
}

func fileSHA256(path string) ([32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
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
	var views []SubmissionView
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
	var ev Evidence
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
