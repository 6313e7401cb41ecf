package ca

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"pkiboard/internal/durable"
	"pkiboard/wire"
)

// Secrets are 32 random bytes in unpadded base64url behind a prefix that says
// what they are, so that a leaked one is recognisable (and secret scanners
// can find it).
const (
	tokenPrefix       = "pkbt_" // a one-time enrollment token (student or board)
	boardSecretPrefix = "pkbb_" // the board enrollment secret
	secretBytes       = 32
)

func (a *Authority) newSecret(prefix string) (string, error) {
	b := make([]byte, secretBytes)
	defer clear(b)
	if _, err := io.ReadFull(a.o.Rand, b); err != nil {
		return "", fmt.Errorf("ca: read random secret: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// validSecret reports whether s has the form newSecret gives.
func validSecret(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil && len(b) == secretBytes
}

// hashSecret returns the SHA-256 under which a token or the board secret is
// stored.
func hashSecret(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// CreateToken makes a one-time enrollment token for a student: it lets one
// enrollment for sid succeed, until ttl has passed (zero means
// Options.TokenTTL). sid must match the SID pattern and, when there is a
// roster, be on it. Only the token's SHA-256 is stored: the caller shows the
// token to the operator once, and never logs it.
func (a *Authority) CreateToken(sid string, ttl time.Duration) (token string, expires time.Time, err error) {
	if !a.sidRE.MatchString(sid) {
		return "", time.Time{}, fmt.Errorf("ca: SID %q does not match the SID pattern %s", sid, a.o.SIDPattern)
	}
	if sid == a.o.BoardName {
		return "", time.Time{}, fmt.Errorf("ca: %q is the board's name; make a board token instead", sid)
	}
	if a.roster != nil && !a.roster.contains(sid) {
		return "", time.Time{}, fmt.Errorf("ca: SID %q is not on the roster %s", sid, a.o.RosterFile)
	}
	return a.createToken(sid, wire.ProfileStudent, ttl)
}

// CreateBoardToken makes a one-time token for the board's enrollment
// (profile 2), an alternative to the board enrollment secret; see
// CreateToken.
func (a *Authority) CreateBoardToken(ttl time.Duration) (token string, expires time.Time, err error) {
	return a.createToken(a.o.BoardName, wire.ProfileBoard, ttl)
}

func (a *Authority) createToken(sid string, profile uint8, ttl time.Duration) (string, time.Time, error) {
	if ttl < 0 {
		return "", time.Time{}, fmt.Errorf("ca: token lifetime %s is negative", ttl)
	}
	if ttl == 0 {
		ttl = a.o.TokenTTL
	}
	token, err := a.newSecret(tokenPrefix)
	if err != nil {
		return "", time.Time{}, err
	}
	h := hashSecret(token)
	now := a.now()
	rec := tokenRecord{SID: sid, Profile: profile, Created: now, Expires: now.Add(ttl)}
	err = a.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b.Get(h[:]) != nil {
			return errors.New("ca: token already exists")
		}
		return putJSON(b, h[:], rec)
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("ca: store token: %w", err)
	}
	a.log.Info("enrollment token created", zap.String("sid", sid), zap.Uint8("profile", profile),
		zap.Time("expires", rec.Expires))
	return token, rec.Expires, nil
}

// tokenProblem says why a token cannot be spent.
type tokenProblem int

const (
	tokenOK tokenProblem = iota
	tokenInvalid
	tokenExpired
	tokenUsed
)

// checkToken looks up a token by its hash in tx and checks that it can be
// spent now on an enrollment of sid with profile. A token made for another
// SID or profile is tokenInvalid, exactly like an unknown one.
//
// The lookup compares SHA-256 outputs, not the token: its timing depends on
// hash bytes an attacker cannot choose, so it reveals nothing about stored
// tokens. The record's SID is public.
func checkToken(tx *bolt.Tx, h [32]byte, sid string, profile uint8, now time.Time) (tokenRecord, tokenProblem, error) {
	var rec tokenRecord
	found, err := getJSON(tx.Bucket(bucketTokens), h[:], &rec)
	switch {
	case err != nil:
		return rec, 0, err
	case !found || rec.SID != sid || rec.Profile != profile:
		return rec, tokenInvalid, nil
	case !rec.UsedAt.IsZero():
		return rec, tokenUsed, nil
	case !now.Before(rec.Expires):
		return rec, tokenExpired, nil
	}
	return rec, tokenOK, nil
}

// spendToken marks a checked token used by the certificate serial.
func spendToken(tx *bolt.Tx, h [32]byte, rec tokenRecord, now time.Time, serial string) error {
	rec.UsedAt, rec.Serial = now, serial
	return putJSON(tx.Bucket(bucketTokens), h[:], rec)
}

// tokenRefusal turns a token problem into the refusal PROTOCOL.md §4 gives.
func (a *Authority) tokenRefusal(p tokenProblem, rec tokenRecord, sid string, profile uint8) *wire.Refusal {
	if profile == wire.ProfileBoard {
		switch p {
		case tokenExpired:
			return wire.Refusef(wire.CodeBoardNotAuthorized, "the board token expired at %s; use the board enrollment secret or ask the CA operator for a new token", rec.Expires.Format(timeLayout))
		case tokenUsed:
			return wire.Refusef(wire.CodeBoardNotAuthorized, "the board token was already used at %s; use the board enrollment secret or ask the CA operator for a new token", rec.UsedAt.Format(timeLayout))
		}
		return wire.Refusef(wire.CodeBoardNotAuthorized, "the token is neither the board enrollment secret (%s in the CA's data directory) nor a board token the CA issued; check that you copied it whole", BoardSecretFile)
	}
	switch p {
	case tokenExpired:
		return wire.Refusef(wire.CodeTokenExpired, "the enrollment token for SID %q expired at %s; ask the course staff for a new one", sid, rec.Expires.Format(timeLayout))
	case tokenUsed:
		return wire.Refusef(wire.CodeTokenUsed, "the enrollment token for SID %q was already used at %s; ask the course staff for a new one", sid, rec.UsedAt.Format(timeLayout))
	}
	return wire.Refusef(wire.CodeTokenInvalid, "the token is not one the CA issued for SID %q; check that you copied it whole and that it was made for this SID, or ask the course staff for a new one", sid)
}

// isBoardSecret compares token with the board enrollment secret in constant
// time (through their SHA-256 hashes).
func (a *Authority) isBoardSecret(token string) bool {
	h := hashSecret(token)
	return subtle.ConstantTimeCompare(h[:], a.boardSecretHash[:]) == 1
}

// loadOrCreateBoardSecret makes sure the store holds the hash of a board
// enrollment secret. On first start it draws one, writes it to
// board-enroll.token (0600) and then stores its hash, in that order: a crash
// between the two leaves the file, whose secret the next start adopts.
func (a *Authority) loadOrCreateBoardSecret() error {
	var stored []byte
	err := a.db.View(func(tx *bolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketMeta).Get(metaBoardSecretHash))
		return nil
	})
	if err != nil {
		return fmt.Errorf("ca: read board secret hash: %w", err)
	}
	path := a.BoardSecretPath()
	data, err := os.ReadFile(path)
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("ca: read the board enrollment secret: %w", err)
	}
	defer clear(data)
	fileSecret := strings.TrimSpace(string(data))

	switch {
	case len(stored) == sha256.Size:
		copy(a.boardSecretHash[:], stored)
		if data == nil {
			a.log.Info("the board enrollment secret file is gone; the secret it held still works for whoever kept a copy",
				zap.String("file", path))
		} else if !a.isBoardSecret(fileSecret) {
			a.log.Warn("the board enrollment secret file does not hold the secret the CA accepts (was it edited?); the original secret still works",
				zap.String("file", path))
		}
		return nil
	case stored != nil:
		return fmt.Errorf("ca: %s holds a board secret hash of %d bytes, want %d; the store is damaged", DBFile, len(stored), sha256.Size)
	case data != nil && !validSecret(fileSecret, boardSecretPrefix):
		return fmt.Errorf("ca: %s exists but does not hold a board enrollment secret; delete it and start again to make a new one", path)
	case data == nil:
		secret, err := a.newSecret(boardSecretPrefix)
		if err != nil {
			return err
		}
		fileSecret = secret
		if err := durable.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("ca: write the board enrollment secret: %w", err)
		}
		a.log.Info("board enrollment secret written; give it to the board operator", zap.String("file", path))
	}
	h := hashSecret(fileSecret)
	if err := a.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaBoardSecretHash, h[:])
	}); err != nil {
		return fmt.Errorf("ca: store the board secret hash: %w", err)
	}
	a.boardSecretHash = h
	return nil
}
