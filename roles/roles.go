// Package roles runs pkiboard's roles — the CA, the board and the student — from
// a validated configuration. Each role has one file; the shared server loop and
// the operator commands live beside them.
//
// The roles hold the process's lifecycle (listen, serve, stop on the context's
// cancellation); the protocol and storage work is done by the packages they use.
package roles

import (
	"context"
	"errors"
	"io"

	"go.uber.org/zap"

	"pkiboard/config"
)

// ErrNotBuilt is returned by a role that does not exist yet in this version.
var ErrNotBuilt = errors.New("not built yet in this version of pkiboard")

// StudentOptions is what the student role is asked to do besides its config.
type StudentOptions struct {
	IDs     []string  // student IDs, in order
	Message string    // text to submit instead of the default ("" for the default)
	Report  string    // path of a file to submit instead of a message
	Out     io.Writer // where the course's required lines are printed
}

// RunBoard runs the submission board until ctx is cancelled.
func RunBoard(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	return errors.New("role board: " + ErrNotBuilt.Error())
}

// RunStudent enrolls and submits for every ID in opts.
func RunStudent(ctx context.Context, cfg *config.Config, log *zap.Logger, opts StudentOptions) error {
	return errors.New("role student: " + ErrNotBuilt.Error())
}
