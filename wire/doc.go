// Package wire implements the pkiboard protocol's transport layer, as described in
// sections 1 to 3 of PROTOCOL.md: length-prefixed frames with size limits and
// deadlines (frame.go, conn.go), the strict binary field encoding of message bodies
// (codec.go), a registry of typed messages (message.go), the Error message and its
// codes (errors.go), and resumable, verified file transfer (transfer.go, receive.go).
//
// Every pkiboard role speaks through this package. Other exchanges (CA enrollment,
// the board session) add their own message types and error codes to it, one file
// per exchange, by calling [Register] and [RegisterCode] from an init function.
//
// The package is not a security layer: frames travel in the clear, nothing here
// authenticates a peer or protects a message from tampering, and a file's SHA-256
// only detects accidents. Confidentiality and authentication belong to the session
// built on top of it. Nor does it decide policy: which names, sizes and messages a
// role accepts in which state is for the caller to say.
package wire
