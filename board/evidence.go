package board

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"

	"pkiboard/internal/durable"
	"pkiboard/session"
)

// SubmissionView is one stored submission as `pkiboard submissions` shows it
// (and its --json prints).
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

// View returns the record as `pkiboard submissions` shows it.
func (r *Record) View() SubmissionView {
	return SubmissionView{
		ID: r.ID, SID: r.SID, Serial: hex.EncodeToString(r.Serial), Name: r.Name, Size: r.Size,
		SHA256: hex.EncodeToString(r.SHA256[:]), Suite: r.Suite, Peer: r.Peer, Received: r.Received,
		Resumed: r.Resumed,
	}
}

// Evidence is the outcome of checking a stored submission offline
// (`pkiboard submissions --verify ID`).
type Evidence struct {
	Submission SubmissionView `json:"submission"`
	ContentOK  bool           `json:"content_ok"` // the stored bytes have the recorded SHA-256
	SignedBy   string         `json:"signed_by"`  // the student certificate's subject
	Issuer     string         `json:"issuer"`     // who issued it
	Problem    string         `json:"problem,omitempty"`
}

// Verify checks, with the root alone, that the stored content of rec is what
// the student signed: the content's SHA-256, the student's chain at the time
// of receipt, and the signature over the submission statement. The evidence
// holds when Problem is empty.
func (s *Store) Verify(rec *Record, root *x509.Certificate) Evidence {
	ev := Evidence{Submission: rec.View()}
	sum, err := durable.FileSHA256(s.ContentPath(rec))
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
