// Package roles runs pkiboard's roles — the CA, the board, the student and the
// adversary — from a validated configuration, and the operator commands that look
// after them. Each role has its file; the shared server loop, the operator socket
// and the daemons' stats live beside them.
//
// The roles hold the process's lifecycle (listen, serve, stop on the context's
// cancellation); the protocol and storage work is done by the packages they use:
// ca, board, session, wire. The board's and the student's STEP lines
// (steps 3 to 6) are logged here, from the facts that session and board return:
// those packages log no step. Only the main package imports roles.
package roles

import "io"

// StudentOptions is what the student role is asked to do besides its config.
type StudentOptions struct {
	IDs     []string // student IDs, in order
	Message string   // text to submit instead of the default ("" for the default)
	Report  string   // path of a file to submit instead of a message
	// Assignment is the assignment to submit to; student.assignment if "".
	Assignment string
	Out        io.Writer // where the course's required lines are printed
	// Screen, if set, is standard error, where the log goes: on a terminal,
	// a report's uploads draw their progress bars there.
	Screen *Screen
	// Command is the command line that started the run (os.Args), which an
	// interrupted run says to run again.
	Command []string
}
