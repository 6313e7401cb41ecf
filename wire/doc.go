// Package wire implements the pkiboard protocol's transport layer, as described in
// sections 1 to 3 of PROTOCOL.md: length-prefixed frames with size limits and
// deadlines (frame.go, conn.go), the strict binary field encoding of message bodies
// (codec.go), the table of every message type (message.go), the Error message and
// the table of every error code (errors.go), and resumable, verified file transfer
// (transfer.go, receive.go).
//
// Every pkiboard role speaks through this package. The messages and codes of the
// other exchanges (CA enrollment, the board session, the operator socket) are
// declared one file per exchange (ca.go, session.go, admin.go) and listed in the
// literal tables beside the others.
//
// The package is not a security layer: frames travel in the clear, nothing here
// authenticates a peer or protects a message from tampering, and a file's SHA-256
// only detects accidents. Confidentiality and authentication belong to the session
// built on top of it. Nor does it decide policy: which names, sizes and messages a
// role accepts in which state is for the caller to say.
package wire
