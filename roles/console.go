package roles

import (
	"crypto/x509"
	"io"

	"go.uber.org/zap"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/console"
	"pkiboard/internal/config"
	"pkiboard/internal/roster"
)

// boardConsole registers the board's console pages on its endpoint (none
// without one): the course as the daemon holds it — its store, the
// assignments in force (the lab's without an assignments file), the roster
// read at each page, receipts verified against root and the CRL held, and
// the export streamed as a zip (ExportArchive).
func (ep *endpoint) boardConsole(cfg *config.Config, st *board.Store, assignments func() []board.Assignment,
	root *x509.Certificate, crl func() *x509.RevocationList, log *zap.Logger) {
	if ep == nil {
		return
	}
	if assignments == nil {
		lab := []board.Assignment{board.LabAssignmentOf(int64(cfg.Board.MaxSubmission))}
		assignments = func() []board.Assignment { return lab }
	}
	rosterOf := func() ([]roster.Entry, error) { return courseRoster(cfg) }
	console.Board(ep.srv, console.BoardOptions{
		Store:       st,
		Assignments: assignments,
		Roster:      rosterOf,
		Root:        root,
		CRL:         crl,
		Export: func(assignment string, w io.Writer) error {
			entries, err := rosterOf()
			if err != nil {
				return err
			}
			return ExportArchive(st, entries, assignment, root, w)
		},
		Log: log.Named("console"),
	})
}

// caConsole registers the CA's console pages on its endpoint (none without
// one).
func (ep *endpoint) caConsole(auth *ca.Authority, log *zap.Logger) {
	if ep == nil {
		return
	}
	console.CA(ep.srv, console.CAOptions{Authority: auth, Log: log.Named("console")})
}
