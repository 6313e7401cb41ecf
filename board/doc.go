// Package board is the submission board's own work, below its role: the
// store of submissions, the partial uploads on disk, the CRL keeper and the
// evidence of what a student submitted.
//
//   - [Store] keeps every accepted submission's content, as a file written
//     durably, and its row in the database, with the evidence that makes it
//     non-repudiable (the student's certificate, the session's transcript
//     hash, the statement and the student's signature) and the receipt the
//     board signed for it. [Store.Commit] makes a session's
//     [session.Submission] durable and builds its [Record]; a submission is
//     listed only once both its content and its row are durable.
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
// # The database
//
// The index is an SQLite database, board.db in the data directory, kept
// through package sqlstore (WAL, synchronous=FULL, one writer connection
// that group-commits concurrent Commits, a lock file that keeps a second
// board off it). Another process may read it while the board runs: the
// operator commands (`pkiboard submissions`, `pkiboard backup`) open it
// read-only, and so may the sqlite3 shell, run as the board's user:
//
//	sqlite3 -readonly board.db 'select sid, count(*) from submissions group by sid'
//
// Schema version 1 (PRAGMA user_version) is one STRICT table, a row per
// stored submission:
//
//	submissions(
//	  seq                 INTEGER PRIMARY KEY  -- 1, 2, …: the order of ids
//	  id                  TEXT UNIQUE          -- printf('%06d', seq): the receipt's id
//	  sid                 TEXT                 -- the student's ID (the certificate's CN)
//	  serial              TEXT                 -- the student certificate's serial, lowercase hex
//	  name                TEXT                 -- the file's name, as the student sent it
//	  size                INTEGER              -- its size in bytes
//	  sha256              TEXT                 -- its SHA-256, lowercase hex
//	  suite               TEXT                 -- the session's suite: 'aes-256-gcm', 'aes-256-ctr-hmac-sha256' or 'rc4-hmac-sha256'
//	  received            TEXT                 -- the receipt's time, '2026-11-29T10:14:01.123Z' (RFC 3339, UTC, ms)
//	  peer                TEXT                 -- the student's address and port, or NULL
//	  resumed             INTEGER              -- the offset an interrupted upload resumed from (0: none)
//	  file                TEXT UNIQUE          -- the content file in submissions/: id || '.dat'
//	  student_certificate BLOB                 -- DER
//	  transcript          BLOB                 -- TH of the session, 32 bytes
//	  statement           BLOB                 -- what the student signed (PROTOCOL.md §5.4)
//	  signature           BLOB                 -- the student's signature over statement
//	  board_certificate   BLOB                 -- DER of the board certificate that signed the receipt
//	  receipt             BLOB                 -- the Receipt message's body, exactly as signed and sent
//	)
//	INDEX submissions_sid ON submissions(sid, received)
//
// Every column is NOT NULL but peer, and CHECK constraints hold each to its
// form (the hex columns to lowercase hex, received to its pattern, suite to
// the suites, file to id || '.dat'). A row is evidence on its own: with the
// root certificate alone, the student's certificate, statement and signature
// show what the student sent, and the receipt with the board's certificate
// what the board acknowledged. The content stays a file on disk, named by id.
//
// The receipt is signed before the row is committed and stored with it: the
// id is the next in sequence (held in memory by the process that holds the
// lock) and the time of receipt is taken when Commit begins; the row and the
// receipt's bytes are committed in one durable transaction, and only then is
// the receipt sent. A crash in between leaves a gap in the ids and a content
// file no row names (RemoveOrphans removes it at the next start), never a
// receipt sent and not stored.
//
// The session protocol is package session's and the file transfer package
// wire's. The board's lifecycle — its identity, listening, the operator
// socket, the STEP lines of its log — is the board role's (package roles),
// which this package never imports.
package board
