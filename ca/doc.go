// Package ca is pkiboard's certificate authority and both sides of the CA
// exchange of PROTOCOL.md §4:
//
//   - Authority owns the root key and certificate, checks enrollment
//     requests against the policy of §4, issues certificates from a fresh
//     template, keeps a durable record of every certificate and every
//     decision, revokes, and publishes a CRL;
//   - Server serves the exchange for an Authority on each connection it is
//     handed: enrollment, fetching the root and the CRL, and the boards'
//     watches, on which the CA pushes each new CRL and the board's
//     root-signed status (BoardStatus) and Revoke waits for the boards to
//     install a new CRL;
//   - Client is the other side: Enroll, Fetch and FetchRoot, with
//     ParseCRLPEM to check a CRL it fetched;
//   - Anchor is a holder's rule for trusting the CA's root: the pinned
//     fingerprint, else the root configured or saved before, else trust on
//     first use;
//   - ReuseOrEnroll settles a holder's identity: the certificate saved in its
//     directory while it serves, otherwise a new one enrolled.
//
// It does not listen, read configuration or log the protocol's STEP lines:
// package roles accepts the connections and hands them to a Server, runs the
// operator socket, reads the config, and logs the steps from the facts this
// package returns (Authority.Created, Server.OnIssued, Enrollment.FirstUse,
// Identity.Reused and the like). The Authority logs only operational lines:
// refusals, failures, revocations, CRLs, tokens. An Authority, a Server and
// an Anchor are safe for concurrent use.
//
// # Files
//
// Everything of the Authority lives in Options.Dir:
//
//	root.pem            the root certificate (PEM), written last on first start
//	root-key.pem        the root key, PKCS#8 PEM, mode 0600, encrypted when a passphrase is set
//	ca.db               the store (bbolt, package store)
//	crl.pem             the current CRL (PEM "X509 CRL"); the CA serves a new CRL from memory
//	                    before it writes it here, and writes again after a failed write
//	board-enroll.token  the board enrollment secret, mode 0600 (only its SHA-256 is in ca.db)
//
// A holder (the board, a student for one SID) keeps its identity in a
// directory of its own: KeyFile (key.pem, mode 0600), CertFile (cert.pem) and
// RootFile (root.pem, the root its certificate came with).
//
// # Store layout
//
// ca.db has these buckets. Records are JSON objects (field names below);
// times are RFC 3339 in UTC, serials hexadecimal without sign or separators
// (lowercase; stores written before 2026-11-26 hold uppercase, read alike),
// []byte fields standard base64.
//
//	certs         serial (big-endian bytes, no sign byte) → certificate record:
//	              serial, sid, profile, subject, not_before, not_after, der,
//	              status ("valid" or "revoked"), revoked_at, reason (RFC 5280 CRLReason)
//	certs-by-sid  u8 len(sid) ‖ sid ‖ serial bytes → empty; the index SID → serials
//	revoked       serial bytes → {revoked_at, reason, not_after}; what the next CRL lists
//	decisions     u64 big-endian sequence number → decision record:
//	              time, sid, peer, profile, accepted, code, reason, serial (the key is the sequence number)
//	tokens        SHA-256(token) → token record: sid, profile, created, expires,
//	              used_at, serial (the certificate it was spent on)
//	meta          "crl-number" → u64 big-endian, the last CRL number issued;
//	              "board-secret-sha256" → 32 bytes; "schema" → "1"
//
// Enrollment tokens and the board secret are never stored, only their SHA-256.
// The certificate record, its index entry, the spending of the token and the
// accepted decision are written in one transaction, and Enroll returns only
// after that transaction is durable.
package ca
