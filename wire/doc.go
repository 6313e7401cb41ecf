// Package wire is sections 1 to 3 and 6 of PROTOCOL.md in Go: the bytes every
// pkiboard role puts on the network, and nothing else.
//
// It holds length-prefixed frames with size limits and deadlines (frame.go,
// conn.go); the strict binary encoding of message bodies (codec.go); every
// message of every exchange, one file per exchange (transfer.go, ca.go,
// session.go, admin.go), listed with its constructor in one literal table
// (message.go); and every error code, listed with its name in another
// (errors.go). Both tables are checked against PROTOCOL.md by the tests.
//
// Errors come in two types. A *[Refusal] is this side refusing the peer: every
// error this package reports about the peer's bytes is one, with its code and a
// sentence for the peer, and so are the refusals of the packages above. An
// *[Error] is the Error message, the peer refusing this side. [Answer] is the
// one way to tell a peer why the conversation ends, [CodeOf] finds the code an
// error carries, and [Expect] turns "a message of type T, or else" into an
// error of the right kind.
//
// File transfer (§3) is here as a protocol: [SendFile] sends a file, and a
// [Receiver] receives one, checking its name, size and SHA-256, into a [Sink]
// that its owner supplies — [Memory] by default. The package opens no file:
// where received bytes are kept durably, and how an interrupted transfer
// resumes, is the sink's business (the board's partial files are in package
// board).
//
// The package is not a registry: no other package adds messages or codes to
// it. Nor is it a security layer: frames travel in the clear, nothing here
// authenticates a peer or protects a message from tampering, and a file's
// SHA-256 only detects accidents; confidentiality and authentication belong to
// the session built on top of it (package session). Nor does it decide policy:
// which names, sizes and messages a role accepts in which state is for the
// caller to say.
package wire
