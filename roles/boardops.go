package roles

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/keys"
)

// openBoardStore opens the board's store in dataDir read-only, whether or not
// the board runs: operator commands read the database directly, beside the
// daemon, and need no socket.
func openBoardStore(dataDir string) (*board.Store, error) {
	if err := readAsOwner(filepath.Join(dataDir, board.DBFile)); err != nil {
		return nil, err
	}
	return board.OpenReadOnly(dataDir)
}

// ListSubmissions prints what the board holds, as a table or JSON, read from
// its database.
func ListSubmissions(_ context.Context, cfg *config.Config, asJSON bool, w io.Writer) error {
	st, err := openBoardStore(cfg.Board.DataDir)
	if err != nil {
		return fmt.Errorf("submissions: %w", err)
	}
	recs, err := st.List()
	st.Close()
	if err != nil {
		return fmt.Errorf("submissions: %w", err)
	}
	views := make([]board.SubmissionView, len(recs))
	for i := range recs {
		views[i] = recs[i].View()
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

// boardCRL returns the CRL the board keeps in dataDir (crl.pem), or nil if it
// has none that parses. Board.Verify uses it only if the root signed it.
func boardCRL(dataDir string) *x509.RevocationList {
	data, err := os.ReadFile(filepath.Join(dataDir, "crl.pem"))
	if err != nil {
		return nil
	}
	crl, err := keys.ParseCRLPEM(data)
	if err != nil {
		return nil
	}
	return crl
}

// VerifySubmissionOptions says how to check a stored submission.
type VerifySubmissionOptions struct {
	ID string

	// The trust anchor, only from what the operator names (PROTOCOL.md
	// §5.5): Root (--root FILE), else RootFingerprint (--root-fingerprint),
	// else board.root_fingerprint, else board.root_file. With a
	// fingerprint, board.root_file or the root the board saved in its data
	// directory is used if it has that fingerprint; the saved root alone,
	// which the board may have trusted on first use, is not enough.
	Root            string
	RootFingerprint []byte
}

// VerifySubmission checks a stored submission's evidence offline and prints
// the verdict, and whether the student's certificate is revoked now and since
// when. It fails unless the evidence holds.
func VerifySubmission(_ context.Context, cfg *config.Config, o VerifySubmissionOptions, w io.Writer) error {
	b := &cfg.Board
	anchor := anchorOptions{
		RootFile: o.Root,
		How:      "give the root certificate with --root FILE, or its SHA-256 fingerprint with --root-fingerprint HEX, or set board.root_fingerprint or board.root_file in the config; the root the board saved on first use is not enough on its own",
	}
	switch {
	case len(o.RootFingerprint) > 0:
		anchor.Fingerprint, anchor.FingerprintFrom = o.RootFingerprint, "--root-fingerprint"
	case len(b.RootFingerprint) > 0:
		anchor.Fingerprint, anchor.FingerprintFrom = b.RootFingerprint, "board.root_fingerprint"
	case o.Root == "" && b.RootFile != "":
		anchor.RootFile = b.RootFile
	}
	if b.RootFile != "" {
		anchor.Candidates = append(anchor.Candidates, b.RootFile)
	}
	anchor.Candidates = append(anchor.Candidates, filepath.Join(b.DataDir, ca.RootFile))
	root, from, err := resolveAnchor(anchor)
	if err != nil {
		return fmt.Errorf("submissions --verify %s: %w", o.ID, err)
	}
	st, err := openBoardStore(b.DataDir)
	if err != nil {
		return fmt.Errorf("submissions --verify %s: %w", o.ID, err)
	}
	rec, err := st.Get(board.CanonicalID(o.ID))
	if err != nil {
		st.Close()
		return fmt.Errorf("submissions --verify %s: %w", o.ID, err)
	}
	ev := st.Verify(rec, root, boardCRL(b.DataDir))
	st.Close()
	s := ev.Submission
	if ev.Problem != "" {
		return fmt.Errorf("submission %s from %s does NOT verify against the root %s (%s): %s", s.ID, s.SID, ev.Root, from, ev.Problem)
	}
	fmt.Fprintf(w, "submission %s from %s verifies against the root %s (%s): %s (%d bytes, SHA-256 %s) was signed by %s, certificate %s issued by %s, received %s\n",
		s.ID, s.SID, ev.Root, from, s.Name, s.Size, s.SHA256, ev.SignedBy, s.Serial, ev.Issuer, s.Received.UTC().Format(time.RFC3339))
	switch ev.Revocation {
	case board.RevocationUnknown:
		fmt.Fprintf(w, "the student's certificate %s: revocation unknown (the board holds no CRL of this root)\n", s.Serial)
	case board.RevocationNone:
		fmt.Fprintf(w, "the student's certificate %s is not revoked (the board's CRL number %s)\n", s.Serial, ev.CRLNumber)
	default:
		fmt.Fprintf(w, "the student's certificate %s is revoked (%s) since %s, after the submission (the board's CRL number %s)\n",
			s.Serial, ev.Reason, ev.RevokedAt.Format(time.RFC3339), ev.CRLNumber)
	}
	return nil
}
