// Package session implements the board session of PROTOCOL.md §5: the
// handshake in which the board checks the student's signed hello and
// certificate, the cheap checks first, and sends a session key with its
// certificate and stapled status (steps 3 and 4), and the student checks the
// board and its status and recovers the keys (step 5), the key schedule, the
// record layer (AES-256-GCM, or encrypt-then-MAC with a stream cipher and
// HMAC-SHA256), and the submission exchanged over it (step
// 6): the file transfer, the student's signed SubmitEnd and the board's signed
// Receipt, which names the board's certificate.
//
// [Server] and [Client] run one side of the handshake over a framed
// [wire.Conn] and return a [Conn], which implements [wire.MessageReadWriter]
// with records, so that the file transfer of package wire runs over it
// unchanged. [Conn.Submit], [Conn.ReceiveSubmission] and [Conn.SendReceipt]
// are the steps of the submission; [VerifyReceipt] and [VerifyStatement]
// check its evidence offline, with the root certificate alone, [JudgeReceipt]
// applies the receipt-validity policy under revocation, and
// [MarshalReceiptFile] and [ParseReceiptFile] are the receipt file a student
// keeps (PROTOCOL.md §5.5). A board shares one [ReplayCache] among its
// sessions, so that a recorded hello sent again is refused for a lookup.
//
// Every refusal, on either side, is a *[wire.Refusal] (find it with
// errors.As) whose code and sentence were also sent to the peer, unless the
// peer had gone ([wire.PeerGone]: a frame cut short is such a refusal); a
// refusal received from the peer is a *[wire.Error]. A handshake that fails
// returns a *[HandshakeError] saying at which course step it failed.
//
// The package logs nothing: it returns facts, and the roles log the course's
// STEP lines from them — an established [Conn] tells its SID, the peer's
// certificate, the suite, the key transport and, on the student's side, the
// board's status; a [HandshakeError] the step, the SID, whether the student
// had proven possession of her key and then her checked certificate; Submit
// returns the verified receipt.
//
// Cryptography comes from the standard library (crypto/hpke, crypto/hkdf,
// crypto/hmac, crypto/aes, crypto/rsa, crypto/ecdsa, crypto/x509), and RC4
// from pkiboard/rc4; this package composes them and implements no primitive.
//
// The package is not a server: it does not listen, limit connections, log,
// store submissions, write files, fetch CRLs or the board's status, or
// remember CRL numbers across processes. Those belong to the roles (package
// roles) and the board's store and CRL keeper (package board); revocation
// reaches the handshake through [ServerConfig.CheckRevoked] and
// [ServerConfig.Status], and the student's memory of the highest CRL number
// through [ClientConfig.MinCRLNumber].
package session
