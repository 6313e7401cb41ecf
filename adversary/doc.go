// Package adversary is the man in the middle of the course's picture: a proxy
// between the student and the board that relays the board session of
// PROTOCOL.md §5 frame by frame, logs what it can read, and attacks it — it
// eavesdrops, flips bits, drops, reorders and replays records, swaps
// certificates, strips cipher suites, pretends to be the board, and tries to
// recover the session keys. Each attack is meant to fail; the log says what the
// adversary did and what it saw come back, so that a student or a reviewer can
// watch which part of the protocol stops it.
//
// The adversary knows only what a real one could: the bytes on the wire, the
// public protocol (it implements the parts of PROTOCOL.md it needs — the
// transcript hashes, the key schedule, the record format, the key transport —
// on its own, from the document; of package session it uses only two exported
// helpers, SuiteName and keys.Sign), and, when it is given one, a
// certificate and key the CA issued to the adversary itself as a student
// ("mallory"). It never holds the student's or the board's private key.
//
// It is not a protocol implementation to rely on: it checks nothing, limits
// little, and exists to be defeated. The roles package runs it as
// `pkiboard --role=adversary`; package internal/attacklab drives it against a
// real CA, board and student and judges each attack.
package adversary
