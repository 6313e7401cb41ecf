package ca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"

	"pkiboard/internal/durable"
	"pkiboard/internal/roster"
	"pkiboard/internal/sqlstore"
	"pkiboard/wire"
)

// An enrollment token (PROTOCOL.md §4.1) is TokenPrefix followed by the
// unpadded base64url encoding of 32 random bytes, its secret. The prefix says
// what a leaked string is (and lets secret scanners find it). The token never
// crosses the network: the client derives an Ed25519 key from the secret
// (TokenKey) and signs its request's binding with it; the CA stores only the
// public key.
const (
	TokenPrefix  = "pkbt_"
	secretBytes  = 32
	tokenKeyInfo = "pkiboard v2 token key" // the HKDF info of the token key
)

// v1BoardSecretPrefix began version 1's reusable board enrollment secret,
// which version 2 does not accept.
const v1BoardSecretPrefix = "pkbb_"

// ErrOldBoardSecret is TokenKey's error for a version 1 board enrollment
// secret ("pkbb_…"): there is no reusable board secret any more.
var ErrOldBoardSecret = errors.New("this is a version 1 board enrollment secret, which pkiboard no longer accepts: make a one-time board token on the CA's machine with `pkiboard token --board` and use it instead")

// TokenKey returns the Ed25519 signing key of an enrollment token:
// HKDF-SHA256 of its secret (no salt, info "pkiboard v2 token key", 32
// bytes) is the key's seed (RFC 8032 §5.1.5). Surrounding white space is
// ignored. A string that is not a token is an error that says so without
// repeating it; ErrOldBoardSecret for a version 1 board secret.
func TokenKey(token string) (ed25519.PrivateKey, error) {
	token = strings.TrimSpace(token)
	if strings.HasPrefix(token, v1BoardSecretPrefix) {
		return nil, ErrOldBoardSecret
	}
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return nil, fmt.Errorf("the enrollment token does not begin with %q; check that you copied it whole", TokenPrefix)
	}
	secret, err := base64.RawURLEncoding.DecodeString(rest)
	defer clear(secret)
	if err != nil || len(secret) != secretBytes {
		return nil, fmt.Errorf("the enrollment token is not %q and %d bytes in unpadded base64url; check that you copied it whole", TokenPrefix, secretBytes)
	}
	return tokenKeyFromSecret(secret), nil
}

// tokenKeyFromSecret derives a token's key from its secret (PROTOCOL.md §4.1).
func tokenKeyFromSecret(secret []byte) ed25519.PrivateKey {
	seed, err := hkdf.Key(sha256.New, secret, nil, tokenKeyInfo, ed25519.SeedSize)
	if err != nil {
		panic("ca: HKDF of 32 bytes failed: " + err.Error()) // only for lengths beyond 255 hashes
	}
	defer clear(seed)
	return ed25519.NewKeyFromSeed(seed)
}

// newToken draws a token from r and returns it with its public key.
func newToken(r io.Reader) (string, ed25519.PublicKey, error) {
	secret := make([]byte, secretBytes)
	defer clear(secret)
	if _, err := io.ReadFull(r, secret); err != nil {
		return "", nil, fmt.Errorf("ca: read random token: %w", err)
	}
	key := tokenKeyFromSecret(secret)
	defer clear(key)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(secret), bytes.Clone(key.Public().(ed25519.PublicKey)), nil
}

// CreateToken makes a one-time enrollment token for a student: it lets one
// enrollment for sid succeed, until ttl has passed (zero means
// Options.TokenTTL). sid must match the SID pattern and, when there is a
// roster, be on it. Only the token's public key is stored: the caller shows
// the token to the operator once, and never logs it.
func (a *Authority) CreateToken(sid string, ttl time.Duration) (token string, expires time.Time, err error) {
	if !a.sidRE.MatchString(sid) {
		return "", time.Time{}, fmt.Errorf("ca: SID %q does not match the SID pattern %s", sid, a.o.SIDPattern)
	}
	if sid == a.o.BoardName {
		return "", time.Time{}, fmt.Errorf("ca: %q is the board's name; make a board token instead", sid)
	}
	if a.roster != nil && !a.roster.Contains(sid) {
		return "", time.Time{}, fmt.Errorf("ca: SID %q is not on the roster %s", sid, a.o.RosterFile)
	}
	return a.createToken(sid, wire.ProfileStudent, ttl)
}

// CreateBoardToken makes a one-time token for one board's first enrollment
// (profile 2, the board name); see CreateToken. Each board that serves the
// name enrolls with its own token, and renews afterwards without one.
func (a *Authority) CreateBoardToken(ttl time.Duration) (token string, expires time.Time, err error) {
	return a.createToken(a.o.BoardName, wire.ProfileBoard, ttl)
}

func (a *Authority) createToken(sid string, profile uint8, ttl time.Duration) (string, time.Time, error) {
	var (
		token   string
		expires time.Time
		older   int
	)
	err := a.db.Update(func(tx *sql.Tx) error {
		var err error
		token, expires, older, err = a.insertToken(tx, sid, profile, ttl, a.now())
		return err
	})
	if err != nil {
		return "", time.Time{}, err
	}
	a.log.Info("enrollment token created", zap.String("sid", sid), zap.Uint8("profile", profile),
		zap.Time("expires", expires), zap.Int("older_cancelled", older))
	return token, expires, nil
}

// insertToken makes a token in tx and, for a student, cancels her older
// live tokens in the same transaction (a board token cancels none: each
// board enrolls with its own). It returns the token, its expiry and how many
// older tokens it cancelled.
func (a *Authority) insertToken(tx *sql.Tx, sid string, profile uint8, ttl time.Duration, now time.Time) (string, time.Time, int, error) {
	if ttl < 0 {
		return "", time.Time{}, 0, fmt.Errorf("ca: token lifetime %s is negative", ttl)
	}
	if ttl == 0 {
		ttl = a.o.TokenTTL
	}
	token, pub, err := newToken(a.o.Rand)
	if err != nil {
		return "", time.Time{}, 0, err
	}
	older := 0
	if profile == wire.ProfileStudent {
		if older, err = cancelLiveTokens(tx, sid, now); err != nil {
			return "", time.Time{}, 0, err
		}
	}
	// ca.db keeps whole seconds; so does the expiry the operator is shown.
	expires := now.Add(ttl).Truncate(time.Second)
	if _, err := tx.Exec(`INSERT INTO tokens (public_key, sid, profile, created, expires) VALUES (?, ?, ?, ?, ?)`,
		[]byte(pub), sid, profile, sqlTime(now), sqlTime(expires)); err != nil {
		return "", time.Time{}, 0, fmt.Errorf("ca: store token: %w", err)
	}
	return token, expires, older, nil
}

// liveTokenWhere selects a student's live tokens: unused, not cancelled, not
// expired. Its parameters are the SID and the time now.
const liveTokenWhere = `sid = ? AND profile = 1 AND used_at IS NULL AND cancelled IS NULL AND expires > ?`

// cancelLiveTokens marks the live tokens of student sid cancelled at now and
// returns how many there were.
func cancelLiveTokens(tx *sql.Tx, sid string, now time.Time) (int, error) {
	res, err := tx.Exec(`UPDATE tokens SET cancelled = ? WHERE `+liveTokenWhere, sqlTime(now), sid, sqlTime(now))
	if err != nil {
		return 0, fmt.Errorf("ca: cancel tokens: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("ca: cancel tokens: %w", err)
	}
	return int(n), nil
}

// CancelTokens cancels the live (unused, unexpired) enrollment tokens of
// student sid and returns how many it cancelled. Each keeps its row, marked
// with the time it was cancelled; the CA refuses it from then on
// (token-invalid, saying it was cancelled).
func (a *Authority) CancelTokens(sid string) (int, error) {
	if !a.sidRE.MatchString(sid) {
		return 0, fmt.Errorf("ca: SID %q does not match the SID pattern %s; check the SID", sid, a.o.SIDPattern)
	}
	var n int
	err := a.db.Update(func(tx *sql.Tx) error {
		var err error
		n, err = cancelLiveTokens(tx, sid, a.now())
		return err
	})
	if err != nil {
		return 0, err
	}
	a.log.Info("enrollment tokens cancelled", zap.String("sid", sid), zap.Int("cancelled", n))
	return n, nil
}

// RosterToken is a token made for one student of the roster, with her name
// and email address where the roster gives them. Token is a secret.
type RosterToken struct {
	roster.Entry
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// RosterTokens is what RosterTokens made, and whom it passed over.
type RosterTokens struct {
	Tokens []RosterToken `json:"tokens"`
	// HoldToken counts the students passed over because they hold a live
	// token; HoldCertificate those who hold a valid certificate (and no live
	// token). Neither is passed over with renew.
	HoldToken       int `json:"hold_token"`
	HoldCertificate int `json:"hold_certificate"`
}

// RosterTokens makes one student token, valid for ttl (zero means
// Options.TokenTTL), for each SID of the roster that holds neither a live
// token nor a valid certificate; with renew, for every SID of the roster,
// cancelling the older live tokens. All are made in one transaction: either
// every token is stored or none is. The tokens are returned once, in the
// roster's order, and never logged.
func (a *Authority) RosterTokens(ttl time.Duration, renew bool) (RosterTokens, error) {
	if a.roster == nil {
		return RosterTokens{}, errors.New("ca: there is no roster; set ca.roster_file to the course's roster")
	}
	entries := a.roster.Entries()
	for _, e := range entries {
		if e.SID == a.o.BoardName {
			return RosterTokens{}, fmt.Errorf("ca: the roster %s lists %q, the board's name; remove that line", a.o.RosterFile, e.SID)
		}
	}
	var out RosterTokens
	err := a.db.Update(func(tx *sql.Tx) error {
		out = RosterTokens{}
		now := a.now()
		for _, e := range entries {
			if !renew {
				if live, err := exists(tx, `SELECT 1 FROM tokens WHERE `+liveTokenWhere, e.SID, sqlTime(now)); err != nil {
					return err
				} else if live {
					out.HoldToken++
					continue
				}
				if cert, err := exists(tx, `SELECT 1 FROM certificates WHERE sid = ? AND profile = 1 AND status = 'valid' AND not_after > ?`, e.SID, sqlTime(now)); err != nil {
					return err
				} else if cert {
					out.HoldCertificate++
					continue
				}
			}
			token, expires, _, err := a.insertToken(tx, e.SID, wire.ProfileStudent, ttl, now)
			if err != nil {
				return err
			}
			out.Tokens = append(out.Tokens, RosterToken{Entry: e, Token: token, Expires: expires})
		}
		return nil
	})
	if err != nil {
		return RosterTokens{}, err
	}
	a.log.Info("enrollment tokens created for the roster", zap.String("roster", a.o.RosterFile), zap.Int("tokens", len(out.Tokens)),
		zap.Bool("renew", renew), zap.Int("hold_token", out.HoldToken), zap.Int("hold_certificate", out.HoldCertificate))
	return out, nil
}

// exists reports whether query returns a row.
func exists(tx *sql.Tx, query string, args ...any) (bool, error) {
	var one int
	err := tx.QueryRow(query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ca: read tokens: %w", err)
	}
	return true, nil
}

// TokenState is the state of a token as the operator commands show it.
type TokenState string

// The states of a token.
const (
	TokenUnused    TokenState = "unused"
	TokenUsed      TokenState = "used"
	TokenExpired   TokenState = "expired" // unused, and past its expiry
	TokenCancelled TokenState = "cancelled"
)

// TokenView is an enrollment token as `pkiboard tokens` shows it: without
// its secret, which the CA never had stored.
type TokenView struct {
	SID       string     `json:"sid"`
	Profile   string     `json:"profile"` // "student" or "board"
	Created   time.Time  `json:"created"`
	Expires   time.Time  `json:"expires"`
	State     TokenState `json:"state"`
	UsedAt    time.Time  `json:"used_at,omitzero"`
	Serial    string     `json:"serial,omitempty"` // the certificate it was spent on
	Cancelled time.Time  `json:"cancelled,omitzero"`
}

// view returns r as the operator commands show it, at now.
func (r tokenRecord) view(now time.Time) TokenView {
	v := TokenView{SID: r.SID, Profile: profileName(r.Profile), Created: r.Created, Expires: r.Expires,
		UsedAt: r.UsedAt, Serial: r.Serial, Cancelled: r.Cancelled}
	switch {
	case !r.UsedAt.IsZero():
		v.State = TokenUsed
	case !r.Cancelled.IsZero():
		v.State = TokenCancelled
	case !now.Before(r.Expires):
		v.State = TokenExpired
	default:
		v.State = TokenUnused
	}
	return v
}

// Tokens returns the enrollment tokens in the store, oldest first: of sid
// only unless sid is empty, and only the unused ones unless all is set.
func (r *Records) Tokens(sid string, all bool) ([]TokenView, error) {
	return listTokens(r.db, sid, all, r.now().UTC().Truncate(time.Second))
}

// Tokens is Records.Tokens on the Authority's store.
func (a *Authority) Tokens(sid string, all bool) ([]TokenView, error) {
	return listTokens(a.db, sid, all, a.now())
}

func listTokens(db *sqlstore.DB, sid string, all bool, now time.Time) ([]TokenView, error) {
	var views []TokenView
	err := db.View(func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT sid, profile, created, expires, used_at, serial, cancelled FROM tokens
			WHERE (? = '' OR sid = ?) ORDER BY created, rowid`, sid, sid)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			rec, err := scanToken(rows)
			if err != nil {
				return err
			}
			if v := rec.view(now); all || v.State == TokenUnused {
				views = append(views, v)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("ca: list tokens: %w", err)
	}
	return views, nil
}

// tokenProblem says why a token cannot authorize a request.
type tokenProblem int

const (
	tokenOK tokenProblem = iota
	tokenInvalid
	tokenExpired
	tokenBadSignature
	tokenCancelled // the signature must verify before the refusal says so
)

// lookupToken finds the token whose public key is pub in tx and checks that
// it may authorize an enrollment of sid with profile now (PROTOCOL.md §4.2
// step 6): made for them, not cancelled, not expired. Whether it is spent is
// step 8's question. A token made for another SID or profile is tokenInvalid,
// exactly like an unknown one. A cancelled token is tokenCancelled, which the
// caller turns into tokenBadSignature unless the request's signature
// verifies: only the token's holder learns that it was cancelled.
//
// The lookup is by public key, which is no secret: a stolen store, or an
// observer of a request, learns nothing that signs a request.
func lookupToken(tx *sql.Tx, pub []byte, sid string, profile uint8, now time.Time) (tokenRecord, tokenProblem, error) {
	rec, found, err := getToken(tx, pub)
	switch {
	case err != nil:
		return rec, 0, err
	case !found || rec.SID != sid || rec.Profile != profile:
		return rec, tokenInvalid, nil
	case !rec.Cancelled.IsZero():
		return rec, tokenCancelled, nil
	case !now.Before(rec.Expires):
		return rec, tokenExpired, nil
	}
	return rec, tokenOK, nil
}

// spendToken marks a checked, unused token used by the certificate serial,
// which the transaction has stored.
func spendToken(tx *sql.Tx, pub []byte, now time.Time, serial string) error {
	res, err := sqlstore.Exec(tx, spendTokenSQL, sqlTime(now), serial, pub)
	if err != nil {
		return fmt.Errorf("ca: spend token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return errors.New("ca: spend token: the token is no longer unused") // the caller checked it in this transaction
	}
	return nil
}

// tokenRecord is a row of the tokens table, less its key (the token's
// Ed25519 public key). Nothing in it, nor the key, is secret or can sign a
// request: a stolen store enrolls nobody.
type tokenRecord struct {
	SID       string
	Profile   uint8
	Created   time.Time
	Expires   time.Time
	UsedAt    time.Time
	Serial    string // the certificate it was spent on
	Cancelled time.Time
}

// getToken returns the row of the token whose public key is pub, and whether
// there is one.
func getToken(tx *sql.Tx, pub []byte) (tokenRecord, bool, error) {
	rec, err := scanToken(sqlstore.QueryRow(tx, getTokenSQL, pub))
	if errors.Is(err, sql.ErrNoRows) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("ca: read token: %w", err)
	}
	return rec, true, nil
}

// scanToken reads a token's row: sid, profile, created, expires, used_at,
// serial, cancelled.
func scanToken(row interface{ Scan(...any) error }) (tokenRecord, error) {
	var (
		rec                       tokenRecord
		created, expires          string
		usedAt, serial, cancelled sql.NullString
	)
	if err := row.Scan(&rec.SID, &rec.Profile, &created, &expires, &usedAt, &serial, &cancelled); err != nil {
		return rec, err
	}
	for _, f := range []struct {
		dst *time.Time
		src sql.NullString
	}{
		{&rec.Created, sql.NullString{String: created, Valid: true}},
		{&rec.Expires, sql.NullString{String: expires, Valid: true}},
		{&rec.UsedAt, usedAt},
		{&rec.Cancelled, cancelled},
	} {
		var err error
		if *f.dst, err = parseSQLTime(f.src); err != nil {
			return rec, err
		}
	}
	rec.Serial = serial.String
	return rec, nil
}

// tokenRefusal turns a token problem into the refusal PROTOCOL.md §4.2 gives.
func tokenRefusal(p tokenProblem, rec tokenRecord, sid string, profile uint8) *wire.Refusal {
	who, what, ask := fmt.Sprintf("SID %q", sid), "SID", "ask the course staff for a new one"
	if profile == wire.ProfileBoard {
		who, what, ask = "the board", "board", "make a new board token on the CA's machine (pkiboard token --board)"
	}
	switch p {
	case tokenExpired:
		return wire.Refusef(wire.CodeTokenExpired, "the enrollment token for %s expired at %s; %s", who, rec.Expires.Format(timeLayout), ask)
	case tokenCancelled:
		return wire.Refusef(wire.CodeTokenInvalid, "the enrollment token for %s was cancelled at %s (a newer token replaced it, or the course staff cancelled it); use the newest token you were given, or %s",
			who, rec.Cancelled.Format(timeLayout), ask)
	case tokenBadSignature:
		return wire.Refusef(wire.CodeTokenInvalid, "the request's signature does not verify with the token's key; sign the request with the key derived from the token, or %s", ask)
	}
	return wire.Refusef(wire.CodeTokenInvalid, "the token is not one the CA issued for %s, or it was cancelled; check that you copied it whole and that it was made for this %s, or %s",
		who, what, ask)
}

// usedRefusal is the refusal of a token already spent on another key.
func usedRefusal(rec tokenRecord, sid string, profile uint8) *wire.Refusal {
	if profile == wire.ProfileBoard {
		return wire.Refusef(wire.CodeTokenUsed, "the board token was already used at %s, for another key; a board with a valid certificate renews without a token, otherwise make a new board token (pkiboard token --board)", rec.UsedAt.Format(timeLayout))
	}
	return wire.Refusef(wire.CodeTokenUsed, "the enrollment token for SID %q was already used at %s, for another key; ask the course staff for a new one", sid, rec.UsedAt.Format(timeLayout))
}

// BoardTokenPath returns the file the CA's first start writes a one-time
// board token to. The token works once, until Options.TokenTTL after the
// first start; `pkiboard token --board` makes more.
func (a *Authority) BoardTokenPath() string { return a.path(BoardTokenFile) }

// writeBoardToken makes the one-time board token of the first start and
// writes it to board-enroll.token (mode 0600). It runs once, after the
// root is created: a crash before it leaves no token file, and the
// operator makes one with `pkiboard token --board`.
func (a *Authority) writeBoardToken() error {
	token, expires, err := a.CreateBoardToken(0)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(a.BoardTokenPath(), []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("ca: write the board token: %w", err)
	}
	a.log.Info("one-time board token written; give it to the board operator (it works once)",
		zap.String("file", a.BoardTokenPath()), zap.Time("expires", expires))
	return nil
}
