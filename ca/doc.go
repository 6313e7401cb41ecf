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
//	ca.db               the store (bbolt, package store)
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
// ca.db has these buckets. Records are JSON objects (field names below);
// times are RFC 3339 in UTC, serials hexadecimal without sign or separators
// (lowercase; stores written before 2026-11-26 hold uppercase, read alike),
// []byte fields standard base64.
//
//	certs         serial (big-endian bytes, no sign byte) → certificate record:
//	              serial, sid, profile, subject, not_before, not_after, der,
//	              status ("valid" or "revoked"), revoked_at, reason (RFC 5280 CRLReason),
//	              and the accepted decision: peer, auth ("none", "token", "renewal"),
//	              renews (the serial it renewed), superseded_by (the serial that renewed it)
//	certs-by-sid  u8 len(sid) ‖ sid ‖ serial bytes → empty; the index SID → serials
//	revoked       serial bytes → {revoked_at, reason, not_after}; what the next CRL lists
//	decisions     u64 big-endian sequence number → refusal record: time, sid, peer,
//	              profile, code, reason; a ring of the last MaxStoredRefusals refusals
//	              of peers that proved possession of a token or a certificate
//	tokens        the token's Ed25519 public key → token record: sid, profile, created,
//	              expires, used_at, serial (the certificate it was spent on), cancelled
//	meta          "crl-number" → u64 big-endian, the last CRL number issued; "schema" → "2"
//
// Enrollment tokens are never stored, only their public keys: a stolen store
// enrolls nobody. The certificate record, its index entry, the spending of the
// token — or, for a renewal, the revocation of the renewed certificate with
// reason superseded and the CRL number of the CRL that lists it — are written
// in one transaction, and Enroll returns only after that transaction is
// durable. Refusals of peers that proved nothing are never stored.
package ca
