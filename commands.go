package main

import (
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"pkiboard/internal/config"
	"pkiboard/roles"
)

// operatorCommands are the subcommands that look after an installation. The CA
// commands work whether or not the CA daemon runs: they reach a running daemon
// through its admin socket, or else open its data directory themselves.
func operatorCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "enroll",
			Category:  "student",
			Usage:     "enroll one SID with the CA and write key.pem, cert.pem and root.pem",
			UsageText: "pkiboard enroll --sid SID --out DIR [--key FILE] [--csr FILE] [--token-file FILE] [--board]",
			Description: `Settles the CA's root first (student.root_fingerprint, a root.pem already in DIR,
or else trust on first use, said loudly), so that a wrong root costs no token. Then
generates a key (or uses --key, e.g. made by openssl, or the key.pem an earlier,
interrupted attempt left in DIR), sends a CSR (or the --csr made by 'openssl req'
with CN=SID) to the CA at student.ca_addr, and writes the certificate into DIR.
key.pem (mode 0600) is written before the request, and only when the key was
generated here. A token for a CA with policy = "token" comes from the
PKIBOARD_TOKEN environment variable or --token-file (a file holding the bare
token), never from the command line; it never leaves this machine: the request
is signed with a key derived from it. With --board, enrolls the board's
certificate with a one-time board token (pkiboard token --board), checking the
root against board.root_fingerprint.`,
			Flags: append(commonFlags(),
				&cli.StringFlag{Name: "sid", Required: true, Usage: "the student `ID` (or, with --board, the board's name)"},
				&cli.StringFlag{Name: "out", Required: true, Usage: "write the files into `DIR`"},
				&cli.StringFlag{Name: "key", Usage: "certify this private key `FILE` (PEM) instead of generating one"},
				&cli.StringFlag{Name: "csr", Usage: "send this CSR `FILE` (PEM or DER) instead of making one"},
				&cli.StringFlag{Name: "token-file", Usage: "read the enrollment token from `FILE` (the bare token)"},
				&cli.BoolFlag{Name: "board", Usage: "enroll the board's certificate (needs a one-time board token)"},
			),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "student")
				if err != nil {
					return err
				}
				token, err := readToken(c)
				if err != nil {
					return err
				}
				log, err := newLogger(cfg, "enroll")
				if err != nil {
					return err
				}
				defer log.Sync() //nolint:errcheck // stderr may not support sync
				return roles.Enroll(c.Context, cfg, log, roles.EnrollOptions{
					SID:     c.String("sid"),
					KeyFile: c.String("key"),
					CSRFile: c.String("csr"),
					OutDir:  c.String("out"),
					Board:   c.Bool("board"),
					Token:   token,
				}, os.Stdout)
			},
		},
		{
			Name:     "certs",
			Category: "CA operator",
			Usage:    "list the certificates the CA issued (serial, SID, expiry, status)",
			Flags: append(commonFlags(),
				&cli.StringFlag{Name: "sid", Usage: "only certificates for `SID`"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "ca")
				if err != nil {
					return err
				}
				return roles.ListCertificates(c.Context, cfg, c.String("sid"), c.Bool("json"), os.Stdout)
			},
		},
		{
			Name:      "revoke",
			Category:  "CA operator",
			Usage:     "revoke a certificate by serial, or every certificate of a SID, and update the CRL",
			UsageText: "pkiboard revoke (--serial HEX | --sid SID) [--reason REASON]",
			Description: `REASON is an RFC 5280 reason: unspecified, keyCompromise, cACompromise,
affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn or
aACompromise (kebab-case works too, e.g. key-compromise). certificateHold is not
supported: a revocation here is final.`,
			Flags: append(commonFlags(),
				&cli.StringFlag{Name: "serial", Usage: "the certificate's serial number in `HEX`"},
				&cli.StringFlag{Name: "sid", Usage: "revoke every valid certificate of `SID`"},
				&cli.StringFlag{Name: "reason", Value: "unspecified", Usage: "the RFC 5280 `REASON`"},
			),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "ca")
				if err != nil {
					return err
				}
				if c.IsSet("serial") == c.IsSet("sid") {
					return usagef("give --serial or --sid, one of them")
				}
				return roles.Revoke(c.Context, cfg, roles.RevokeArgs{
					Serial: c.String("serial"), SID: c.String("sid"), Reason: c.String("reason"),
				}, os.Stdout)
			},
		},
		{
			Name:      "token",
			Category:  "CA operator",
			Usage:     "create a one-time enrollment token for a SID (or for a board)",
			UsageText: "pkiboard token (--sid SID | --board) [--ttl DURATION]",
			Description: `Prints the token once; the CA keeps only a public key derived from it, so a
copy of the CA's store enrolls nobody. The token works once, until it expires
(default ca.token_ttl). Give it to the student, who enrolls with PKIBOARD_TOKEN=...
or a token file. With --board, the token lets one board enroll its certificate
once (board.enroll_token_file); the board renews it afterwards with its own key,
without a token. Make one board token per board.`,
			Flags: append(commonFlags(),
				&cli.StringFlag{Name: "sid", Usage: "the student `ID` the token is for"},
				&cli.BoolFlag{Name: "board", Usage: "a one-time token for one board's first enrollment"},
				&cli.StringFlag{Name: "ttl", Usage: "validity as a Go `DURATION` (default ca.token_ttl)"},
			),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "ca")
				if err != nil {
					return err
				}
				if c.IsSet("sid") == c.Bool("board") {
					return usagef("give --sid SID or --board, one of them")
				}
				return roles.CreateToken(c.Context, cfg, roles.TokenArgs{
					SID: c.String("sid"), Board: c.Bool("board"), TTL: c.String("ttl"),
				}, os.Stdout)
			},
		},
		{
			Name:     "crl",
			Category: "CA operator",
			Usage:    "print the CA's current certificate revocation list",
			Flags: append(commonFlags(),
				&cli.BoolFlag{Name: "pem", Usage: "print the CRL itself (PEM) instead of a summary"},
			),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "ca")
				if err != nil {
					return err
				}
				return roles.PrintCRL(c.Context, cfg, c.Bool("pem"), os.Stdout)
			},
		},
		{
			Name:      "submissions",
			Category:  "board operator",
			Usage:     "list the submissions the board holds, or verify one's evidence",
			UsageText: "pkiboard submissions [--json] | pkiboard submissions --verify ID [--root FILE | --root-fingerprint HEX]",
			Description: `Reads the board's database (board.db in board.data_dir) directly, read-only,
whether or not the board runs; run it as the board's user (sudo -u USER ...): it
refuses to read the database as another user, since SQLite may leave files that
user owns beside it, which would stop the board.

With --verify, checks with the root certificate alone that the stored content is
exactly what the student signed: its SHA-256, the student's certificate at the time
of receipt, and the student's signature over the submission statement; that the
stored receipt is the one the board signed for it; and says whether the board's
CRL revokes the student's certificate now, and since when. The
root is only one the operator names: --root FILE, or a fingerprint (--root-fingerprint,
else board.root_fingerprint) that board.root_file or the board's saved root.pem must
have, or board.root_file. Exits non-zero if the evidence does not hold, or if the
certificate was revoked before the submission.`,
			Flags: append(commonFlags(),
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
				&cli.StringFlag{Name: "verify", Usage: "verify the evidence of submission `ID`"},
				&cli.StringFlag{Name: "root", Usage: "--verify: trust the root certificate in `FILE`"},
				&cli.StringFlag{Name: "root-fingerprint", Usage: "--verify: trust the root with this SHA-256 fingerprint `HEX`"},
			),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "board")
				if err != nil {
					return err
				}
				if id := c.String("verify"); id != "" {
					fp, err := fingerprintFlag(c)
					if err != nil {
						return err
					}
					return roles.VerifySubmission(c.Context, cfg, roles.VerifySubmissionOptions{
						ID: id, Root: c.String("root"), RootFingerprint: fp,
					}, os.Stdout)
				}
				return roles.ListSubmissions(c.Context, cfg, c.Bool("json"), os.Stdout)
			},
		},
		{
			Name:      "backup",
			Category:  "operator",
			Usage:     "write a consistent archive of the CA's or the board's data while it serves",
			UsageText: "pkiboard backup --role ca|board --out FILE [--include-root-key] [--include-key]",
			Description: `Writes a tar archive (mode 0600; FILE must not exist) of the daemon's data
directory, whether or not the daemon runs: a consistent copy of its database, made
from a read-only connection of this command, and the files a restored daemon needs.
For the board: board.db, the content file of every submission the copy holds (each
checked against its row's SHA-256), root.pem, cert.pem, crl.pem and status.bin; the
board's private key.pem only with --include-key. For the CA: ca.db, root.pem and
crl.pem; the root's private root-key.pem only with --include-root-key; the one-time
board token never. A private key in the archive is said loudly on stderr. Prints
what it wrote: each file, its size, and the database's rows per table. Run it as
the daemon's user. Restore: mkdir -m 700 DIR && tar -C DIR -xf FILE, set data_dir
to DIR, and start the daemon.`,
			Flags: append(commonFlags(),
				&cli.StringFlag{Name: "role", Required: true, Usage: "back up `ROLE` ca or board"},
				&cli.StringFlag{Name: "out", Required: true, Usage: "write the archive to `FILE` (it must not exist)"},
				&cli.BoolFlag{Name: "include-root-key", Usage: "ca: put the root's private key in the archive"},
				&cli.BoolFlag{Name: "include-key", Usage: "board: put the board's private key in the archive"},
			),
			Action: func(c *cli.Context) error {
				role := c.String("role")
				if role != "ca" && role != "board" {
					return usagef("backup: give --role ca or --role board")
				}
				cfg, err := loadConfig(c, role)
				if err != nil {
					return err
				}
				res, err := roles.Backup(c.Context, cfg, roles.BackupOptions{
					Role: role, Out: c.String("out"),
					IncludeRootKey: c.Bool("include-root-key"), IncludeKey: c.Bool("include-key"),
				}, os.Stderr)
				if err != nil {
					return err
				}
				roles.PrintBackup(os.Stdout, role, res)
				return nil
			},
		},
		{
			Name:      "stats",
			Category:  "operator",
			Usage:     "show a running CA's or board's goroutines, memory, descriptors and connections",
			UsageText: "pkiboard stats [--role ca|board] [--json]",
			Description: `Asks the running daemon, through its operator socket, how it is doing: its
goroutines, the heap in use after a garbage collection, its resident memory and open
file descriptors, the connections it serves now (and max_conns), and how many it has
accepted and refused busy since it started. The daemon is the one --role names, or
the config's role. It fails when that daemon is not running.`,
			Flags: append(commonFlags(),
				&cli.StringFlag{Name: "role", Usage: "the daemon to ask: `ROLE` ca or board (default: the config's role)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			),
			Action: func(c *cli.Context) error {
				role, _ := lookupFlag(c, "role")
				cfg, err := loadConfig(c, role)
				if err != nil {
					return err
				}
				if cfg.Role != "ca" && cfg.Role != "board" {
					return usagef("stats: give --role ca or --role board")
				}
				return roles.DaemonStats(c.Context, cfg, cfg.Role, c.Bool("json"), os.Stdout)
			},
		},
		{
			Name:      "history",
			Category:  "student",
			Usage:     "list your submissions on the board and recover their receipt files",
			UsageText: "pkiboard history --sid SID [--assignment ID] [--out DIR]",
			Description: `Opens an authenticated session with the board as SID (reusing, renewing or
enrolling SID's certificate in student.data_dir as the student role does) and asks
for SID's submissions, newest first: every assignment's, or --assignment's. Each
receipt is checked as at submission (signed by a board certificate the root issued,
for SID, not dated after this machine's clock) and written as its receipt file,
<id>.json, into DIR (default: student.data_dir/SID/receipts, where the student role
saves them): a receipt file deleted or lost is recovered byte for byte. A file
already there with other content is kept and the receipt written beside it. Exits
non-zero if any receipt the board sent is not evidence.`,
			Flags: append(commonFlags(),
				&cli.StringFlag{Name: "sid", Required: true, Usage: "the student `ID`"},
				&cli.StringFlag{Name: "assignment", Usage: "only the submissions to assignment `ID`"},
				&cli.StringFlag{Name: "out", Usage: "write the receipt files into `DIR` (default student.data_dir/SID/receipts)"},
			),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "student")
				if err != nil {
					return err
				}
				log, err := newLogger(cfg, "history")
				if err != nil {
					return err
				}
				defer log.Sync() //nolint:errcheck // stderr may not support sync
				return roles.RunHistory(c.Context, cfg, log, roles.HistoryOptions{
					SID: c.String("sid"), Assignment: c.String("assignment"), OutDir: c.String("out"), Out: os.Stdout,
				})
			},
		},
		{
			Name:      "assignments",
			Category:  "student",
			Usage:     "list the board's assignments as they are for you",
			UsageText: "pkiboard assignments --sid SID",
			Description: `Opens an authenticated session with the board as SID (as pkiboard history does)
and lists the assignments open now or opening later, and those locked that hold a
submission of SID's, by due time: their times as they apply to SID (an extension's
included), the files each accepts, how many times SID submitted to it and which
version counts. A board without assignments lists the lab's, "lab".`,
			Flags: append(commonFlags(),
				&cli.StringFlag{Name: "sid", Required: true, Usage: "the student `ID`"},
			),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "student")
				if err != nil {
					return err
				}
				log, err := newLogger(cfg, "assignments")
				if err != nil {
					return err
				}
				defer log.Sync() //nolint:errcheck // stderr may not support sync
				return roles.RunAssignments(c.Context, cfg, log, roles.AssignmentsOptions{SID: c.String("sid"), Out: os.Stdout})
			},
		},
		{
			Name:      "verify-receipt",
			Category:  "student",
			Usage:     "check a receipt offline against the root certificate",
			UsageText: "pkiboard verify-receipt [--root FILE | --root-fingerprint HEX] [--crl FILE] [--content FILE] [--board-name NAME] RECEIPT",
			Description: `Checks the board's signature on RECEIPT and that the board's certificate, the one
the receipt names, was signed by the root and valid when the receipt was made. The
root is only one you name: --root FILE, or a fingerprint (--root-fingerprint, else
student.root_fingerprint of the config) that a root.pem beside the receipt or in
student.data_dir must have; a root found beside the receipt is never trusted on its
own. With --crl, also applies the receipt-validity policy (valid, suspect or invalid,
by the board certificate's revocation) and exits non-zero unless valid. With
--content, also checks that FILE is what the receipt acknowledges.`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "config", Value: "config.toml", Usage: "read student.root_fingerprint and student.data_dir from `FILE`, if it exists"},
				&cli.StringFlag{Name: "root", Usage: "trust the root certificate in `FILE`"},
				&cli.StringFlag{Name: "root-fingerprint", Usage: "trust the root with this SHA-256 fingerprint `HEX` (colons allowed)"},
				&cli.StringFlag{Name: "crl", Usage: "judge the receipt under the board certificate's revocation in the CRL `FILE`"},
				&cli.StringFlag{Name: "content", Usage: "a `FILE` whose SHA-256 must match the receipt"},
				&cli.StringFlag{Name: "board-name", Usage: "require the board certificate's CN to be `NAME`"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usagef("give one receipt file (pkiboard verify-receipt --help)")
				}
				fp, err := fingerprintFlag(c)
				if err != nil {
					return err
				}
				o := roles.VerifyReceiptOptions{
					File: c.Args().First(), Root: c.String("root"), RootFingerprint: fp,
					CRL: c.String("crl"), Content: c.String("content"), BoardName: c.String("board-name"),
				}
				// The config is optional here: a verifier need not run pkiboard.
				if path := c.String("config"); c.IsSet("config") || fileExists(path) {
					cfg, err := config.Load(path)
					if err != nil {
						return usageError{err}
					}
					o.ConfigFingerprint, o.DataDir = cfg.Student.RootFingerprint, cfg.Student.DataDir
				}
				return roles.VerifyReceipt(o, os.Stdout)
			},
		},
	}
}

// fingerprintFlag parses --root-fingerprint, if given.
func fingerprintFlag(c *cli.Context) ([]byte, error) {
	s := c.String("root-fingerprint")
	if s == "" {
		return nil, nil
	}
	var fp config.Fingerprint
	if err := fp.UnmarshalText([]byte(s)); err != nil {
		return nil, usagef("--root-fingerprint: %w", err)
	}
	return fp, nil
}

// fileExists reports whether path names an existing file.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readToken returns the enrollment token from --token-file or the
// PKIBOARD_TOKEN environment variable ("" when neither is given).
func readToken(c *cli.Context) (string, error) {
	if f := c.String("token-file"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", usagef("--token-file: %w", err)
		}
		return strings.TrimSpace(string(data)), nil
	}
	return strings.TrimSpace(os.Getenv("PKIBOARD_TOKEN")), nil
}
