package roles

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"pkiboard/ca"
	"pkiboard/internal/config"
	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
)

// RevokeArgs selects what `pkiboard revoke` revokes.
type RevokeArgs struct {
	Serial string `json:"serial,omitempty"` // hex
	SID    string `json:"sid,omitempty"`
	Reason string `json:"reason"`
}

// RevokeResult is what `pkiboard revoke` did: how many certificates it
// revoked, the CRL that lists them, and how many of the boards watching the
// CA installed that CRL before the command returned.
type RevokeResult struct {
	Revoked   int    `json:"revoked"`
	CRLNumber uint64 `json:"crl_number,omitempty"`
	Watching  int    `json:"watching"`
	Installed int    `json:"installed"`
	// SaveError says why crl.pem could not be written; the CA serves the new
	// CRL all the same and writes the file again later.
	SaveError string `json:"save_error,omitempty"`
}

// TokenArgs says what token `pkiboard token` makes.
type TokenArgs struct {
	SID   string `json:"sid,omitempty"`
	Board bool   `json:"board,omitempty"`
	TTL   string `json:"ttl,omitempty"` // a Go duration; "" for the CA's token_ttl
}

// RosterTokenArgs says how `pkiboard token --roster` makes its tokens.
type RosterTokenArgs struct {
	TTL   string `json:"ttl,omitempty"` // a Go duration; "" for the CA's token_ttl
	Renew bool   `json:"renew,omitempty"`
}

// CancelTokensArgs names the student whose live tokens `pkiboard token
// --cancel` cancels.
type CancelTokensArgs struct {
	SID string `json:"sid"`
}

// CancelTokensResult is how many tokens `pkiboard token --cancel` cancelled.
type CancelTokensResult struct {
	Cancelled int `json:"cancelled"`
}

// TokenView is a new enrollment token. It is shown once and never stored in
// the clear.
type TokenView struct {
	Token   string    `json:"token"`
	SID     string    `json:"sid"`
	Expires time.Time `json:"expires"`
}

// caOps returns the CA's operator commands that write, bound to auth: the
// daemon serves them on its socket, and an operator command runs them itself
// when no daemon runs. Reading needs neither: `certs` and `crl` read the data
// directory (readCA).
func caOps(auth *ca.Authority) map[string]adminOp {
	return map[string]adminOp{
		"revoke": func(ctx context.Context, raw json.RawMessage) (any, error) {
			var args RevokeArgs
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, err
			}
			reason, err := ca.ParseReason(args.Reason)
			if err != nil {
				return nil, err
			}
			var res ca.Revocation
			switch {
			case args.Serial != "" && args.SID == "":
				serial, err := ParseSerial(args.Serial)
				if err != nil {
					return nil, err
				}
				res, err = auth.Revoke(ctx, serial, reason)
			case args.SID != "" && args.Serial == "":
				res, err = auth.RevokeSID(ctx, args.SID, reason)
			default:
				return nil, errors.New("give --serial or --sid (one of them)")
			}
			if err != nil {
				return nil, err
			}
			out := RevokeResult{Revoked: res.Revoked, CRLNumber: res.CRL.Number, Watching: res.CRL.Watching, Installed: res.CRL.Installed}
			if res.CRL.SaveErr != nil {
				out.SaveError = res.CRL.SaveErr.Error()
			}
			return out, nil
		},
		"token": func(_ context.Context, raw json.RawMessage) (any, error) {
			var args TokenArgs
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, err
			}
			ttl, err := ParseTTL(args.TTL)
			if err != nil {
				return nil, err
			}
			var (
				tok string
				exp time.Time
			)
			if args.Board {
				tok, exp, err = auth.CreateBoardToken(ttl)
			} else {
				tok, exp, err = auth.CreateToken(args.SID, ttl)
			}
			if err != nil {
				return nil, err
			}
			return TokenView{Token: tok, SID: args.SID, Expires: exp}, nil
		},
		"roster-tokens": func(_ context.Context, raw json.RawMessage) (any, error) {
			var args RosterTokenArgs
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, err
			}
			ttl, err := ParseTTL(args.TTL)
			if err != nil {
				return nil, err
			}
			return auth.RosterTokens(ttl, args.Renew)
		},
		"cancel-tokens": func(_ context.Context, raw json.RawMessage) (any, error) {
			var args CancelTokensArgs
			if err := json.Unmarshal(raw, &args); err != nil {
				return nil, err
			}
			n, err := auth.CancelTokens(args.SID)
			if err != nil {
				return nil, err
			}
			return CancelTokensResult{Cancelled: n}, nil
		},
	}
}

// ParseSerial reads a certificate's serial number as an operator writes it
// (revoke --serial): hexadecimal, with or without colons and a 0x prefix.
func ParseSerial(s string) (*big.Int, error) {
	serial, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ReplaceAll(s, ":", ""), "0x"), 16)
	if !ok || serial.Sign() <= 0 {
		return nil, fmt.Errorf("%q is not a hexadecimal serial number: copy it from pkiboard certs", s)
	}
	return serial, nil
}

// ParseTTL reads token --ttl: "" is zero, the CA's token_ttl.
func ParseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	ttl, err := config.ParseDuration(s)
	if err != nil || ttl <= 0 {
		return 0, fmt.Errorf("--ttl %q is not a positive duration; give one such as 72h, 3d or 2w", s)
	}
	return ttl, nil
}

// callCA runs a CA operator command against the installation cfg describes.
func callCA(ctx context.Context, cfg *config.Config, command string, args, out any) error {
	return callAdmin(ctx, cfg.CA.DataDir, command, args, out, func() (map[string]adminOp, func() error, error) {
		auth, err := openAuthority(cfg, zap.NewNop(), false)
		if err != nil {
			return nil, nil, err
		}
		return caOps(auth), auth.Close, nil
	})
}

// ListCertificates prints the CA's issued certificates as a table (or JSON).
// It reads ca.db directly, read-only — while the CA runs too — and needs
// neither the daemon nor the root key.
func ListCertificates(ctx context.Context, cfg *config.Config, sid string, asJSON bool, w io.Writer) error {
	views, err := readCertificates(cfg.CA.DataDir, sid)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if asJSON {
		return printJSON(w, views)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SERIAL\tSID\tPROFILE\tEXPIRES\tSTATUS")
	for _, v := range views {
		status := v.Status
		if v.Status == "revoked" {
			status = fmt.Sprintf("revoked %s (%s)", v.RevokedAt.UTC().Format(time.DateTime), v.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Serial, v.SID, v.Profile, v.NotAfter.UTC().Format(time.DateTime), status)
	}
	return tw.Flush()
}

// readCertificates lists the certificates in the CA's store in dataDir (of
// sid only, unless sid is empty), opened read-only.
func readCertificates(dataDir, sid string) ([]ca.CertView, error) {
	recs, err := ca.OpenRecords(dataDir, nil)
	if err != nil {
		return nil, err
	}
	defer recs.Close()
	certs, err := recs.Certificates()
	if err != nil {
		return nil, err
	}
	views := make([]ca.CertView, 0, len(certs))
	for _, c := range certs {
		if sid == "" || c.SID == sid {
			views = append(views, c.View())
		}
	}
	return views, nil
}

// Revoke revokes by serial or by SID and prints how many certificates were
// revoked, the number of the CRL that lists them, and how many of the boards
// watching the CA installed it before the command returned.
func Revoke(ctx context.Context, cfg *config.Config, args RevokeArgs, w io.Writer) error {
	var res RevokeResult
	if err := callCA(ctx, cfg, "revoke", args, &res); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if res.Revoked == 0 {
		fmt.Fprintf(w, "revoked 0 certificate(s) (none valid); the CRL is unchanged\n")
		return nil
	}
	fmt.Fprintf(w, "revoked %d certificate(s); CRL %d issued; %d of %d watching boards installed it (boards not watching fetch it within board.crl_refresh)\n",
		res.Revoked, res.CRLNumber, res.Installed, res.Watching)
	if res.SaveError != "" {
		fmt.Fprintf(w, "warning: %s; the CA serves the new CRL all the same and keeps trying to write crl.pem: free space in ca.data_dir\n", res.SaveError)
	}
	return nil
}

// CreateToken makes an enrollment token and prints it with its expiry.
func CreateToken(ctx context.Context, cfg *config.Config, args TokenArgs, w io.Writer) error {
	var v TokenView
	if err := callCA(ctx, cfg, "token", args, &v); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	who := "SID " + v.SID
	if args.Board {
		who = "one board's first enrollment (board.enroll_token_file); the board renews afterwards without a token"
	}
	fmt.Fprintf(w, "%s\n", v.Token)
	fmt.Fprintf(w, "# one-time enrollment token for %s; it works once, until %s\n", who, v.Expires.UTC().Format(time.RFC3339))
	return nil
}

// RosterTokens makes one token per student of the CA's roster who needs one
// (every student with args.Renew) and writes them to the CSV file out for a
// mail merge: sid, name, email, token, expires. out must not exist; it is
// created with mode 0600, whole or not at all, and synced before the command
// reports. The tokens are secrets: they go to out only, never to the log or
// to w, which is told how many were made and what to do with the file.
func RosterTokens(ctx context.Context, cfg *config.Config, args RosterTokenArgs, out string, w io.Writer) error {
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("token: %s exists; the tokens go to a new file only: name another, or delete it if its tokens were sent", out)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("token: %w", err)
	}
	dir := filepath.Dir(out)
	// The file is written under a temporary name (0600, as CreateTemp makes
	// it) before the CA makes any token, so that a file that cannot be
	// written costs no tokens.
	tmp, err := os.CreateTemp(dir, ".pkiboard-tokens-*.csv")
	if err != nil {
		return fmt.Errorf("token: %w; choose a directory you can write", err)
	}
	tmpName := tmp.Name()
	keep := false
	defer func() {
		tmp.Close()
		if !keep {
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	var res ca.RosterTokens
	if err := callCA(ctx, cfg, "roster-tokens", args, &res); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	lost := func(err error) error {
		return fmt.Errorf("token: %w; the %d tokens just made are lost: run pkiboard token --roster --renew --out FILE again", err, len(res.Tokens))
	}
	cw := csv.NewWriter(tmp)
	cw.Write([]string{"sid", "name", "email", "token", "expires"}) //nolint:errcheck // checked by Flush
	for _, t := range res.Tokens {
		cw.Write([]string{t.SID, t.Name, t.Email, t.Token, t.Expires.UTC().Format(time.RFC3339)}) //nolint:errcheck // checked by Flush
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return lost(err)
	}
	if err := tmp.Sync(); err != nil {
		return lost(err)
	}
	if err := tmp.Close(); err != nil {
		return lost(err)
	}
	// A link, unlike a rename, never replaces a file made meanwhile.
	if err := os.Link(tmpName, out); err != nil {
		keep = true
		return fmt.Errorf("token: %w; the tokens are in %s (mode 0600): rename it", err, tmpName)
	}
	os.Remove(tmpName)
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("token: %s written, but its directory could not be synced: %w", out, err)
	}
	fmt.Fprintf(w, "wrote %d one-time enrollment token(s) to %s (mode 0600)", len(res.Tokens), out)
	if res.HoldToken+res.HoldCertificate > 0 {
		fmt.Fprintf(w, "; passed over %d student(s) holding an unused token and %d holding a valid certificate (--renew makes one for everyone)",
			res.HoldToken, res.HoldCertificate)
	}
	fmt.Fprintf(w, "\nthe tokens in %s are secrets: send each only to its student (a mail merge from this machine), never over a channel others read, then delete the file\n", out)
	return nil
}

// CancelTokens cancels the unused, unexpired tokens of a student and says how
// many it cancelled.
func CancelTokens(ctx context.Context, cfg *config.Config, sid string, w io.Writer) error {
	var res CancelTokensResult
	if err := callCA(ctx, cfg, "cancel-tokens", CancelTokensArgs{SID: sid}, &res); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintf(w, "cancelled %d unused token(s) of SID %s\n", res.Cancelled, sid)
	return nil
}

// ListTokens prints the CA's enrollment tokens, without their secrets (the
// CA has none): of sid only unless it is empty; the unused ones only unless
// all is set. It reads ca.db directly, read-only, like ListCertificates.
func ListTokens(ctx context.Context, cfg *config.Config, sid string, all, asJSON bool, w io.Writer) error {
	recs, err := ca.OpenRecords(cfg.CA.DataDir, nil)
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	defer recs.Close()
	views, err := recs.Tokens(sid, all)
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	if asJSON {
		if views == nil {
			views = []ca.TokenView{}
		}
		return printJSON(w, views)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SID\tPROFILE\tCREATED\tEXPIRES\tSTATE")
	for _, v := range views {
		state := string(v.State)
		switch v.State {
		case ca.TokenUsed:
			state = fmt.Sprintf("used (%s)", v.Serial)
		case ca.TokenCancelled:
			state = fmt.Sprintf("cancelled %s", v.Cancelled.UTC().Format(time.DateTime))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.SID, v.Profile, v.Created.UTC().Format(time.DateTime), v.Expires.UTC().Format(time.DateTime), state)
	}
	return tw.Flush()
}

// PrintCRL prints the CA's current CRL, as crl.pem in its data directory
// holds it: as PEM, or as a summary of its number, dates and revoked serials.
// It reads the files and the store directly (needing neither the daemon nor
// the root key), checks the CRL against root.pem, and warns when the store
// holds revocations the file does not list yet.
func PrintCRL(ctx context.Context, cfg *config.Config, asPEM bool, w io.Writer) error {
	dir := cfg.CA.DataDir
	recs, err := ca.OpenRecords(dir, nil) // first: it says when dir holds no CA
	if err != nil {
		return fmt.Errorf("crl: %w", err)
	}
	defer recs.Close()
	root, err := keys.ReadCertificate(filepath.Join(dir, ca.RootCertFile))
	if err != nil {
		return fmt.Errorf("crl: %w", err)
	}
	text, err := os.ReadFile(filepath.Join(dir, ca.CRLFile))
	if err != nil {
		return fmt.Errorf("crl: %w (the CA writes it when it starts)", err)
	}
	crl, err := ca.ParseCRLPEM(text, root)
	if err != nil {
		return fmt.Errorf("crl: %s: %w", dir, err)
	}
	if asPEM {
		_, err := w.Write(text)
		return err
	}
	fmt.Fprintf(w, "CRL number %s, issued %s, next update %s, %d revoked\n",
		crl.Number, crl.ThisUpdate.UTC().Format(time.RFC3339), crl.NextUpdate.UTC().Format(time.RFC3339), len(crl.RevokedCertificateEntries))
	tw := newTable(w)
	if len(crl.RevokedCertificateEntries) > 0 {
		fmt.Fprintln(tw, "SERIAL\tREVOKED\tREASON")
	}
	for _, e := range crl.RevokedCertificateEntries {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", keys.SerialHex(e.SerialNumber), e.RevocationTime.UTC().Format(time.DateTime), ca.ReasonName(e.ReasonCode))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	missing, err := recs.CRLMissing(crl)
	if err != nil {
		return fmt.Errorf("crl: %w", err)
	}
	if len(missing) > 0 {
		serials := make([]string, len(missing))
		for i, m := range missing {
			serials[i] = keys.SerialHex(m)
		}
		fmt.Fprintf(w, "warning: the store holds %d revocation(s) this CRL does not list yet (%s); the CA issues a CRL that lists them as soon as it runs\n",
			len(missing), strings.Join(serials, ", "))
	}
	return nil
}
