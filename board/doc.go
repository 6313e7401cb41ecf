// Package board is the submission board's own work, below its role: the
// store of submissions, the partial uploads on disk, the CRL keeper and the
// evidence of what a student submitted.
//
//   - [Store] keeps every accepted submission's content, as a file written
//     durably, and its index entry, with the evidence that makes it
//     non-repudiable (the student's certificate, the session's transcript hash
//     and the student's signature). [Store.Commit] makes a session's
//     [session.Submission] durable and builds its [Record]; a submission is
//     listed only once both its content and its index entry are durable.
//   - A partial upload lives in a per-SID partial directory until it
//     completes, and is never listed: [Store.Receiver] is the sink wire's
//     Receiver writes to (partial.go: a partial file with its checkpoint,
//     which an interrupted upload resumes from, or memory for a small file).
//   - [CRLKeeper] holds the CA's current CRL, loaded, pushed, fetched,
//     refreshed and never replaced by an older one, and answers the session's
//     revocation check ([session.ServerConfig.CheckRevoked]).
//   - [Watcher] keeps the board's watch on the CA (PROTOCOL.md §4.4): the CA
//     pushes each new CRL, which the Watcher checks and hands to the
//     CRLKeeper before it acknowledges it, and the board's root-signed
//     status, which [Watcher.Status] returns for the board to staple to its
//     sessions.
//   - [Store.Verify] checks a stored submission's [Evidence] offline with the
//     root alone; [Record.View] is a submission as the operator sees it.
//
// The session protocol is package session's and the file transfer package
// wire's. The board's lifecycle — its identity, listening, the operator
// socket, the STEP lines of its log — is the board role's (package roles),
// which this package never imports.
package board
