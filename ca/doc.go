// Package ca is pkiboard's certificate authority and both sides of the CA
// exchange of PROTOCOL.md §4:
//
//   - Authority owns the root key and certificate, checks enrollment
//     requests in the order of §4.2 (everything about the request and its
//     authorization before any work on the CSR), issues certificates from a
//     fresh template, keeps a durable record of every certificate, of its
//     token or renewal, and of the last refusals of peers that proved
//     possession of something; counts the refusals of peers that proved
//     nothing without storing them; renews, revokes, and publishes a CRL;
//   - Server serves the exchange for an Authority on each connection it is
//     handed: enrollment, fetching the root and the CRL, and the boards'
//     watches, on which the CA pushes each new CRL and the board's
//     root-signed status (BoardStatus) and Revoke waits for the boards to
//     install a new CRL;
//   - Client is the other side: Request (one enrollment or renewal, signed
//     with a token's key or the current certificate's), Enroll (`pkiboard
//     enroll`), Fetch and FetchRoot, with ParseCRLPEM to check a CRL it
//     fetched; TokenKey derives a token's signing key;
//   - Anchor is a holder's rule for trusting the CA's root, settled before
//     any request: the pinned fingerprint, else the root configured or saved
//     before, else trust on first use;
//   - ReuseOrEnroll settles a holder's identity: the certificate saved in its
//     directory while it serves, renewed two thirds into its life, otherwise
//     a new one enrolled with a token; a Renewer keeps a long-running
//     holder's identity renewed.
//
// It does not listen, read configuration or log the protocol's STEP lines:
// package roles accepts the connections and hands them to a Server, runs the
// operator socket, reads the config, and logs the steps from the facts this
// package returns (Authority.Created, Server.OnIssued, Enrollment.FirstUse,
// Identity.Reused and the like). The Authority logs only operational lines:
// refusals (those of peers that proved nothing at most once a second),
// failures, renewals, revocations, CRLs, tokens. An Authority, a Server and
// an Anchor are safe for concurrent use.
//
// # Files
//
// Everything of the Authority lives in Options.Dir:
//
//	root.pem            the root certificate (PEM), written last on first start
//	root-key.pem        the root key, PKCS#8 PEM, mode 0600, encrypted when a passphrase is set
//	ca.db               the store: an SQLite database (package sqlstore), with its
//	                    ca.db-wal, ca.db-shm and ca.db.lock while the CA runs
//	crl.pem             the current CRL (PEM "X509 CRL"); the CA serves a new CRL from memory
//	                    before it writes it here, and writes again after a failed write
//	board-enroll.token  a one-time board token, mode 0600, written on the first start only
//	                    (only its public key is in ca.db)
//
// A holder (the board, a student for one SID) keeps its identity in a
// directory of its own: KeyFile (key.pem, mode 0600), CertFile (cert.pem),
// RootFile (root.pem, the root its certificate chains to) and, while a
// renewal is under way, NextKeyFile (next-key.pem, mode 0600).
//
// # Store layout
//
// ca.db is an SQLite database at schema version 1 (PRAGMA user_version; the
// migrations are applied at Open, and an empty or missing file becomes
// version 1). The CA holds it with a lock file (ca.db.lock) so that a second
// CA on the same directory is refused; others may read it meanwhile, with
// OpenRecords or with `sqlite3 -readonly`. A ca.db written by an older
// pkiboard (bbolt) is refused: start a new CA in an empty directory.
//
// Times are TEXT, RFC 3339 in UTC to the second ('2026-11-29T10:14:01Z'),
// so that they compare as strings and sqlite3's strftime writes the same;
// serials are TEXT, lowercase hexadecimal of the serial's big-endian bytes
// (keys.SerialHex); DER and keys are BLOBs. CHECK constraints hold the rules
// below, and foreign keys are enforced.
//
//	certificates  one row per certificate issued, with the accepted decision:
//	              serial (primary key), sid, profile (1 student, 2 board),
//	              subject, not_before, not_after,
//	              status ('valid' or 'revoked'; expired is valid and past
//	              not_after), revoked_at and reason (RFC 5280 CRLReason), both
//	              set exactly when revoked,
//	              auth ('none', 'token', 'renewal'), peer (the client's address),
//	              renews (the serial it renewed, exactly when auth is 'renewal'),
//	              superseded_by (the serial that renewed it; revoked, reason 4),
//	              spki_sha256 (SHA-256 of its SubjectPublicKeyInfo), der, issued
//	              (when the CA accepted the request).
//	              Indexes: by sid; the revoked ones (partial index), which the
//	              CRL lists: every revoked board certificate, and the revoked
//	              student certificates until they expire.
//	tokens        public_key (the token's Ed25519 public key, 32 bytes; primary
//	              key), sid, profile, created, expires, used_at and serial (the
//	              certificate it was spent on; both set, or neither), cancelled.
//	              Index: by sid.
//	refusals      seq (increasing), time, sid, peer, profile, code, reason: the
//	              last MaxStoredRefusals refusals of peers that proved
//	              possession of a token or a certificate; the transaction that
//	              adds one deletes those MaxStoredRefusals before it.
//	crl           one row: number, the last CRL number issued.
//
// Enrollment tokens are never stored, only their public keys: a stolen store
// enrolls nobody. The certificate's row, the spending of its token — or, for a
// renewal, the revocation of the renewed certificate with reason superseded
// and the CRL number of the CRL that lists it — are written in one
// transaction, with the token or the renewed certificate checked again inside
// it, and Enroll returns only after that transaction is durable (committed
// with the WAL synced; concurrent enrollments share one commit). Refusals of
// peers that proved nothing are never stored.
package ca
