// Package session implements the board session of PROTOCOL.md §5: the
// handshake in which the board checks the student's certificate and sends a
// session key (steps 3 and 4) and the student checks the board and recovers the
// keys (step 5), the key schedule, the encrypt-then-MAC record layer, and the
// submission exchanged over it (step 6): the file transfer, the student's
// signed SubmitEnd and the board's signed Receipt.
//
// [Server] and [Client] run one side of the handshake over a framed
// [wire.Conn] and return a [Conn], which implements [wire.MessageReadWriter]
// with records, so that the file transfer of package wire runs over it
// unchanged. [Conn.Submit], [Conn.ReceiveSubmission] and [Conn.SendReceipt]
// are the steps of the submission; [VerifyReceipt] and [VerifyStatement]
// check its evidence offline, with the root certificate alone, and
// [MarshalReceiptFile] and [ParseReceiptFile] are the receipt file a student
// keeps (PROTOCOL.md §5.4).
//
// Every refusal, on either side, is a *[wire.Refusal] (find it with
// errors.As) whose code and sentence were also sent to the peer, unless the
// peer had gone ([wire.PeerGone]: a frame cut short is such a refusal); a
// refusal received from the peer is a *[wire.Error]. A handshake that fails
// returns a *[HandshakeError] saying at which course step it failed.
//
// The package logs nothing: it returns facts, and the roles log the course's
// STEP lines from them — an established [Conn] tells its SID, the peer's
// certificate, the suite and the key transport; a [HandshakeError] the step,
// the SID and, past step 3, the student's checked certificate; Submit returns
// the verified receipt.
//
// Cryptography comes from the standard library (crypto/hpke, crypto/hkdf,
// crypto/hmac, crypto/aes, crypto/rsa, crypto/ecdsa, crypto/x509), and RC4
// from pkiboard/rc4; this package composes them and implements no primitive.
//
// The package is not a server: it does not listen, limit connections, log,
// store submissions, write files or fetch CRLs. Those belong to the roles
// (package roles) and the board's store and CRL keeper (package board);
// revocation reaches the handshake through [ServerConfig.CheckRevoked].
package session
