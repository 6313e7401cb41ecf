package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"pkiboard/ca"
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
PKIBOARD_TOKEN environment variable or --token-file (the format of
student.token_file: "SID TOKEN" lines, or the bare token alone), never from the
command line; it never leaves this machine: the request
is signed with a key derived from it. With --board, enrolls the board's
certificate with a one-time board token (pkiboard token --board), checking the
root against board.root_fingerprint.

Example:
   PKIBOARD_TOKEN=... pkiboard enroll --sid 1155000001 --out keys/1155000001`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "sid", Required: true, Usage: "the student `ID` (or, with --board, the board's name)"},
				&cli.StringFlag{Name: "out", Required: true, Usage: "write the files into `DIR`"},
				&cli.StringFlag{Name: "key", Usage: "certify this private key `FILE` (PEM) instead of generating one"},
				&cli.StringFlag{Name: "csr", Usage: "send this CSR `FILE` (PEM or DER) instead of making one"},
				&cli.StringFlag{Name: "token-file", Usage: "read the enrollment token from `FILE`: a \"SID TOKEN\" line, or the bare token alone"},
				&cli.BoolFlag{Name: "board", Usage: "enroll the board's certificate (needs a one-time board token)"},
			}, studentFlags(false)...),
			Action: studentAction("enroll", func(c *cli.Context, cfg *config.Config, log *zap.Logger) error {
				token, err := readToken(c)
				if err != nil {
					return err
				}
				return roles.Enroll(c.Context, cfg, log, roles.EnrollOptions{
					SID:     c.String("sid"),
					KeyFile: c.String("key"),
					CSRFile: c.String("csr"),
					OutDir:  c.String("out"),
					Board:   c.Bool("board"),
					Token:   token,
				}, os.Stdout)
			}),
		},
		{
			Name:      "certs",
			Category:  "CA operator",
			Usage:     "list the certificates the CA issued (serial, SID, expiry, status)",
			UsageText: "pkiboard certs [--sid SID] [--json]",
			Description: `Lists the certificates the CA issued, students' and boards': each one's serial
(the one pkiboard revoke --serial takes), its SID (a board's: its name), its
profile (student or board), when it expires, and its status: valid, expired, or
revoked with the time and the reason. Reads ca.db in ca.data_dir directly,
read-only, whether or not the CA runs; needs neither the CA nor its root key.
Run it as the CA's user.

Example:
   pkiboard certs --sid 1155000001`,
			Flags: append([]cli.Flag{
				onceFlag("sid", "only certificates for `SID`"),
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			}, caFlags()...),
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
			Description: `Revokes the certificate with serial HEX (as pkiboard certs lists it), or every
valid certificate of SID, for REASON, and has the CA issue a new CRL at once: the
boards watching the CA install it before the command returns (it says how many
did), the others within their board.crl_refresh. Goes through the running CA's
operator socket, or, when the CA is stopped, opens ca.data_dir itself (the CRL is
signed with the root key, so an encrypted root key's passphrase is needed then).
REASON is an RFC 5280 reason, in any case, kebab-case too (key-compromise);
certificateHold is not offered: a revocation here is final.

Example:
   pkiboard revoke --sid 1155000001 --reason keyCompromise`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "serial", Usage: "the certificate's serial number in `HEX`"},
				onceFlag("sid", "revoke every valid certificate of `SID`"),
				&cli.StringFlag{Name: "reason", Value: "unspecified", Usage: "the RFC 5280 `REASON`: " + strings.Join(ca.AcceptedReasons(), ", ")},
			}, caFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "ca")
				if err != nil {
					return err
				}
				if c.IsSet("serial") == c.IsSet("sid") {
					return commandUsagef(c, "give --serial HEX or --sid SID, one of them")
				}
				if c.IsSet("serial") {
					if _, err := roles.ParseSerial(c.String("serial")); err != nil {
						return commandUsagef(c, "--serial: %w", err)
					}
				}
				if _, err := ca.ParseAcceptedReason(c.String("reason")); err != nil {
					return commandUsagef(c, "--reason: %w", err)
				}
				return roles.Revoke(c.Context, cfg, roles.RevokeArgs{
					Serial: c.String("serial"), SID: c.String("sid"), Reason: c.String("reason"),
				}, os.Stdout)
			},
		},
		{
			Name:     "token",
			Category: "CA operator",
			Usage:    "create one-time enrollment tokens (for a SID, the roster, or a board), or cancel a SID's",
			UsageText: `pkiboard token (--sid SID | --board) [--ttl DURATION]
pkiboard token --roster [--out FILE.csv] [--renew] [--ttl DURATION]
pkiboard token --cancel --sid SID`,
			Description: `Makes a one-time enrollment token for student SID (or for a board) and prints
it, once: the CA keeps only a public key derived from it, so a copy of the CA's
store enrolls nobody. The token works once, until it expires
(default ca.token_ttl). Give it to the student, who enrolls with PKIBOARD_TOKEN=...
or a token file. A new token for a SID cancels her older unused one. With --board,
the token lets one board enroll its certificate once (board.enroll_token_file); the
board renews it afterwards with its own key, without a token. Make one board token
per board.

With --roster, makes one token for each SID of ca.roster_file that holds neither an
unused token nor a valid certificate (with --renew, for every SID, cancelling the
older unused ones), and writes them to a new CSV file for a mail merge (sid, name,
email, token, expires; mode 0600; default tokens.csv). The file holds secrets: send
each token only to its student, from this machine, then delete the file.

With --cancel, cancels the unused tokens of --sid: the CA refuses them from then on.

Example:
   pkiboard token --sid 1155000001 --ttl 3d`,
			Flags: append([]cli.Flag{
				onceFlag("sid", "the student `ID` the token is for"),
				&cli.BoolFlag{Name: "board", Usage: "a one-time token for one board's first enrollment"},
				&cli.BoolFlag{Name: "roster", Usage: "one token per student of ca.roster_file, written to --out"},
				&cli.StringFlag{Name: "out", Value: "tokens.csv", Usage: "--roster: write the tokens to this new CSV `FILE` (mode 0600)"},
				&cli.BoolFlag{Name: "renew", Usage: "--roster: a token for every student, cancelling the older unused ones"},
				&cli.BoolFlag{Name: "cancel", Usage: "cancel the unused tokens of --sid"},
				&cli.StringFlag{Name: "ttl", Usage: "the token is valid for `DURATION`: 72h, 3d (days) or 2w (weeks)", DefaultText: "ca.token_ttl in the config"},
			}, caFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "ca")
				if err != nil {
					return err
				}
				if _, err := roles.ParseTTL(c.String("ttl")); err != nil {
					return commandUsagef(c, "%w", err)
				}
				if n := countSet(c, "sid", "board", "roster"); n != 1 {
					return commandUsagef(c, "give one of --sid SID, --board and --roster")
				}
				if (c.IsSet("out") || c.IsSet("renew")) && !c.Bool("roster") {
					return commandUsagef(c, "--out and --renew go with --roster")
				}
				switch {
				case c.Bool("cancel"):
					if !c.IsSet("sid") || c.IsSet("ttl") {
						return commandUsagef(c, "--cancel takes --sid SID only")
					}
					return roles.CancelTokens(c.Context, cfg, c.String("sid"), os.Stdout)
				case c.Bool("roster"):
					return roles.RosterTokens(c.Context, cfg, roles.RosterTokenArgs{TTL: c.String("ttl"), Renew: c.Bool("renew")},
						c.String("out"), os.Stderr)
				}
				return roles.CreateToken(c.Context, cfg, roles.TokenArgs{
					SID: c.String("sid"), Board: c.Bool("board"), TTL: c.String("ttl"),
				}, os.Stdout)
			},
		},
		{
			Name:      "tokens",
			Category:  "CA operator",
			Usage:     "list the CA's enrollment tokens, without their secrets",
			UsageText: "pkiboard tokens [--sid SID] [--all] [--json]",
			Description: `Lists the unused tokens (with --all, every token: used, expired and cancelled
too) with their SID, profile, creation and expiry, and state: unused, used (and the
serial of the certificate it was spent on), expired or cancelled. The CA never
stored the secrets, so none is shown. Reads ca.db directly, read-only, whether or
not the CA runs.

Example:
   pkiboard tokens --all`,
			Flags: append([]cli.Flag{
				onceFlag("sid", "only the tokens of this student `ID`"),
				&cli.BoolFlag{Name: "all", Usage: "list used, expired and cancelled tokens too"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			}, caFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "ca")
				if err != nil {
					return err
				}
				return roles.ListTokens(c.Context, cfg, c.String("sid"), c.Bool("all"), c.Bool("json"), os.Stdout)
			},
		},
		{
			Name:      "crl",
			Category:  "CA operator",
			Usage:     "print the CA's current certificate revocation list",
			UsageText: "pkiboard crl [--pem]",
			Description: `Prints the CRL the CA publishes, crl.pem in ca.data_dir, after checking its
signature against the CA's root.pem: its number, when it was issued and when the
next one is due, and each revoked serial with the time and the reason; with --pem,
the CRL itself, for a board or a verifier (pkiboard verify-receipt --crl). Warns
when the CA's store holds a revocation the file does not list yet. Reads the files
directly, whether or not the CA runs; needs neither the CA nor its root key.

Example:
   pkiboard crl --pem > crl.pem`,
			Flags: append([]cli.Flag{
				&cli.BoolFlag{Name: "pem", Usage: "print the CRL itself (PEM) instead of a summary"},
			}, caFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "ca")
				if err != nil {
					return err
				}
				return roles.PrintCRL(c.Context, cfg, c.Bool("pem"), os.Stdout)
			},
		},
		{
			Name:     "submissions",
			Category: "board operator",
			Usage:    "list the submissions the board holds, or verify one's evidence",
			UsageText: `pkiboard submissions [--json]
pkiboard submissions --assignment ID [--sid SID] [--all-versions] [--late] [--json | --csv]
pkiboard submissions --verify ID [--root FILE | --root-fingerprint HEX]`,
			Description: `Reads the board's database (board.db in board.data_dir) directly, read-only,
whether or not the board runs; run it as the board's user (sudo -u USER ...): it
refuses to read the database as another user, since SQLite may leave files that
user owns beside it, which would stop the board.

With --assignment, lists the submissions to that assignment: by default the
version that counts of each student (her latest, or the one staff marked with
pkiboard activate), with its version, lateness against the due time that applied
to it, and whether her extension applied; --all-versions lists every version
(the active one marked), --late only the late ones, --sid one student's.

With --verify, checks with the root certificate alone that the stored content is
exactly what the student signed: its SHA-256, the student's certificate at the time
of receipt, and the student's signature over the submission statement; that the
stored receipt is the one the board signed for it; and says whether the board's
CRL revokes the student's certificate now, and since when. The
root is only one the operator names: --root FILE, or a fingerprint (--root-fingerprint,
else board.root_fingerprint) that board.root_file or the board's saved root.pem must
have, or board.root_file. Exits non-zero if the evidence does not hold, or if the
certificate was revoked before the submission.

Example:
   pkiboard submissions --assignment lab --late`,
			Flags: append([]cli.Flag{
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
				&cli.StringFlag{Name: "assignment", Usage: "list the submissions to assignment `ID`"},
				&cli.StringFlag{Name: "sid", Usage: "--assignment: only those of `SID`"},
				&cli.BoolFlag{Name: "all-versions", Usage: "--assignment: every version, not only the one that counts"},
				&cli.BoolFlag{Name: "late", Usage: "--assignment: only the late ones"},
				&cli.BoolFlag{Name: "csv", Usage: "--assignment: print CSV instead of a table"},
				&cli.StringFlag{Name: "verify", Usage: "verify the evidence of submission `ID` (3 and 000003 are one)"},
				&cli.StringFlag{Name: "root", Usage: "--verify: trust the root certificate in `FILE`"},
				&cli.StringFlag{Name: "root-fingerprint", Usage: "--verify: trust the root with this SHA-256 fingerprint `HEX`"},
			}, boardFlags()...),
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
				if a := c.String("assignment"); a != "" {
					format, err := formatFlag(c)
					if err != nil {
						return err
					}
					return roles.ListAssignment(c.Context, cfg, roles.AssignmentListOptions{
						Assignment: a, SID: c.String("sid"), AllVersions: c.Bool("all-versions"), LateOnly: c.Bool("late"), Format: format,
					}, os.Stdout)
				}
				for _, f := range []string{"sid", "all-versions", "late", "csv"} {
					if c.IsSet(f) {
						return commandUsagef(c, "--%s goes with --assignment ID", f)
					}
				}
				return roles.ListSubmissions(c.Context, cfg, c.Bool("json"), os.Stdout)
			},
		},
		{
			Name:      "progress",
			Category:  "board operator",
			Usage:     "show the roster against who submitted to an assignment: on time, late, missing",
			UsageText: "pkiboard progress --assignment ID [--json | --csv]",
			Description: `Reads the roster (board.roster_file: CSV sid[,name[,email]]) and the board's
database, read-only, whether or not the board runs. Each student on the roster is
on time, late or missing, by the version of hers that counts (her latest, or the
one staff marked with pkiboard activate), with her extension if she has one; then
those who submitted without being on the roster; then the counts. Run it as the
board's user.

Example:
   pkiboard progress --assignment lab --csv > lab-progress.csv`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "assignment", Required: true, Usage: "the assignment's `ID`"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
				&cli.BoolFlag{Name: "csv", Usage: "print CSV instead of a table"},
			}, boardFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "board")
				if err != nil {
					return err
				}
				format, err := formatFlag(c)
				if err != nil {
					return err
				}
				return roles.Progress(c.Context, cfg, roles.ProgressOptions{Assignment: c.String("assignment"), Format: format}, os.Stdout)
			},
		},
		{
			Name:      "extend",
			Category:  "board operator",
			Usage:     "grant a student an extension of an assignment (audited)",
			UsageText: "pkiboard extend --assignment ID --sid SID --until TIME --reason TEXT [--as NAME]",
			Description: `Her due time becomes TIME (RFC 3339 with a zone, e.g. 2026-11-29T23:59:00+08:00),
and her lock time the later of the assignment's and TIME. A second extension
replaces the first. It applies from her next session: terms already announced
stay. The grant is written to the board's append-only audit table under your
OS user's name, or --as NAME. Goes through the running board's operator socket,
or opens board.db itself when the board is stopped; run it as the board's user.

Example:
   pkiboard extend --assignment lab --sid 1155000001 --until 2026-12-06T23:59:00+08:00 --reason "medical certificate"`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "assignment", Required: true, Usage: "the assignment's `ID`"},
				&cli.StringFlag{Name: "sid", Required: true, Usage: "the student's `SID`"},
				&cli.StringFlag{Name: "until", Required: true, Usage: "her new due `TIME`, RFC 3339 with a zone"},
				&cli.StringFlag{Name: "reason", Required: true, Usage: "why, in `TEXT`, for the audit"},
				&cli.StringFlag{Name: "as", Usage: "the staff member's `NAME` for the audit", DefaultText: "your OS user name"},
			}, boardFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "board")
				if err != nil {
					return err
				}
				if _, err := roles.ParseUntil(c.String("until")); err != nil {
					return commandUsagef(c, "%w", err)
				}
				return roles.Extend(c.Context, cfg, roles.ExtendArgs{
					Assignment: c.String("assignment"), SID: c.String("sid"), Until: c.String("until"),
					Reason: c.String("reason"), As: c.String("as"),
				}, os.Stdout)
			},
		},
		{
			Name:      "activate",
			Category:  "board operator",
			Usage:     "mark which of a student's versions of an assignment counts (audited)",
			UsageText: "pkiboard activate --assignment ID --sid SID --version V [--as NAME]",
			Description: `Marks which of student SID's versions of assignment ID counts. By default her
latest submission counts; this marks version V instead, until she submits again
(her newer version then counts). Written to the board's
append-only audit table under your OS user's name, or --as NAME.

Example:
   pkiboard activate --assignment lab --sid 1155000001 --version 2`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "assignment", Required: true, Usage: "the assignment's `ID`"},
				&cli.StringFlag{Name: "sid", Required: true, Usage: "the student's `SID`"},
				&cli.IntFlag{Name: "version", Required: true, Usage: "the `VERSION` that counts (1, 2, …)"},
				&cli.StringFlag{Name: "as", Usage: "the staff member's `NAME` for the audit", DefaultText: "your OS user name"},
			}, boardFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "board")
				if err != nil {
					return err
				}
				if c.Int("version") < 1 {
					return commandUsagef(c, "--version %d: versions are numbered from 1", c.Int("version"))
				}
				return roles.Activate(c.Context, cfg, roles.ActivateArgs{
					Assignment: c.String("assignment"), SID: c.String("sid"), Version: c.Int("version"), As: c.String("as"),
				}, os.Stdout)
			},
		},
		{
			Name:      "export",
			Category:  "board operator",
			Usage:     "write the version that counts of each student's submission to an assignment, with its evidence, into a new directory",
			UsageText: "pkiboard export --assignment ID --out DIR [--root FILE]",
			Description: `Writes into DIR one folder per student who submitted to assignment ID (named by
her SID, or when the SID is not a safe file name, by its safe form and 8 hex
digits of its SHA-256), holding the version of hers that counts under its stored
safe name, its receipt file (receipt.json, exactly as the student's: pkiboard
verify-receipt --root root.pem checks it offline), her certificate
(certificate.pem) and the statement she signed with its signature (statement.bin,
statement.sig); and manifest.csv, one line per student: sid,
name, email (from board.roster_file), folder, version, original name, stored
name, size, sha256, received, due, late_ms, extension_until, and whether her
statement verified (against --root, else board.root_file, else the board's saved
root.pem; "signature only" without one). Every file is written durably. DIR must
not exist or be empty. Reads board.db read-only; run it as the board's user.

Example:
   pkiboard export --assignment lab --out lab-export`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "assignment", Required: true, Usage: "the assignment's `ID`"},
				&cli.StringFlag{Name: "out", Required: true, Usage: "write into `DIR` (new or empty)"},
				&cli.StringFlag{Name: "root", Usage: "verify the statements against the root certificate in `FILE`"},
			}, boardFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c, "board")
				if err != nil {
					return err
				}
				_, err = roles.Export(c.Context, cfg, roles.ExportOptions{
					Assignment: c.String("assignment"), Out: c.String("out"), Root: c.String("root"),
				}, os.Stdout)
				return err
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
to DIR, and start the daemon.

Example:
   pkiboard backup --role board --out board-2026-11-29.tar`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "role", Required: true, Usage: "back up the daemon `ROLE`: ca or board"},
				&cli.StringFlag{Name: "out", Required: true, Usage: "write the archive to `FILE` (it must not exist)"},
				&cli.BoolFlag{Name: "include-root-key", Usage: "ca: put the root's private key in the archive"},
				&cli.BoolFlag{Name: "include-key", Usage: "board: put the board's private key in the archive"},
			}, daemonFlags()...),
			Action: func(c *cli.Context) error {
				role := c.String("role")
				if role != "ca" && role != "board" {
					return commandUsagef(c, "give --role ca or --role board")
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
			Name:      "console-link",
			Category:  "operator",
			Usage:     "print a one-time login link to a running CA's or board's staff console",
			UsageText: "pkiboard console-link --role ca|board --as NAME",
			Description: `Asks the running daemon, through its operator socket, for a login link to its
staff console (on its http_listen), bound to NAME: the console's audit records what
is done in the session under NAME. The link works once, within 10 minutes; the
daemon keeps only its SHA-256. Open it in a browser on this machine, or through an
SSH tunnel (ssh -L 8003:127.0.0.1:8003 board.example); the page it shows has a
button that logs in. It fails when that daemon is not running or serves no console.

Example:
   pkiboard console-link --role board --as alice`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "role", Usage: "ask the daemon `ROLE`: ca or board", DefaultText: "role in the config"},
				&cli.StringFlag{Name: "as", Required: true, Usage: "the staff member's `NAME`, as the audit will say it"},
			}, daemonFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := daemonConfig(c)
				if err != nil {
					return err
				}
				return roles.RequestConsoleLink(c.Context, cfg, cfg.Role, c.String("as"), os.Stdout)
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
the config's role. It fails when that daemon is not running.

Example:
   pkiboard stats --role board`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "role", Usage: "ask the daemon `ROLE`: ca or board", DefaultText: "role in the config"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			}, daemonFlags()...),
			Action: func(c *cli.Context) error {
				cfg, err := daemonConfig(c)
				if err != nil {
					return err
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
non-zero if any receipt the board sent is not evidence.

Example:
   pkiboard history --sid 1155000001 --assignment lab`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "sid", Required: true, Usage: "the student `ID`"},
				&cli.StringFlag{Name: "assignment", Usage: "only the submissions to assignment `ID`"},
				&cli.StringFlag{Name: "out", Usage: "write the receipt files into `DIR`", DefaultText: "student.data_dir/SID/receipts"},
			}, studentFlags(true)...),
			Action: studentAction("history", func(c *cli.Context, cfg *config.Config, log *zap.Logger) error {
				return roles.RunHistory(c.Context, cfg, log, roles.HistoryOptions{
					SID: c.String("sid"), Assignment: c.String("assignment"), OutDir: c.String("out"), Out: os.Stdout,
				})
			}),
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
version counts. A board without assignments lists the lab's, "lab".

Example:
   pkiboard assignments --sid 1155000001`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "sid", Required: true, Usage: "the student `ID`"},
			}, studentFlags(true)...),
			Action: studentAction("assignments", func(c *cli.Context, cfg *config.Config, log *zap.Logger) error {
				return roles.RunAssignments(c.Context, cfg, log, roles.AssignmentsOptions{SID: c.String("sid"), Out: os.Stdout})
			}),
		},
		{
			Name:      "verify-receipt",
			Category:  "student",
			Usage:     "check a receipt offline against the root certificate",
			UsageText: "pkiboard verify-receipt [--root FILE | --root-fingerprint HEX] [--crl FILE] [--content FILE] [--board-name NAME] RECEIPT",
			ArgsUsage: "RECEIPT",
			Description: `Checks the board's signature on RECEIPT and that the board's certificate, the one
the receipt names, was signed by the root and valid when the receipt was made. The
root is only one you name: --root FILE, or a fingerprint (--root-fingerprint, else
student.root_fingerprint of the config) that a root.pem beside the receipt or in
student.data_dir must have; a root found beside the receipt is never trusted on its
own. With --crl, also applies the receipt-validity policy (valid, suspect or invalid,
by the board certificate's revocation) and exits non-zero unless valid. With
--content, also checks that FILE is what the receipt acknowledges.

Example:
   pkiboard verify-receipt --root root.pem --content report.pdf 000003.json`,
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
					return commandUsagef(c, "give one receipt file")
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
				path, given := lookupFlag(c, "config")
				if !given {
					path = c.String("config")
				}
				if given || fileExists(path) {
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

// formatFlag returns the output format --json or --csv asks for.
func formatFlag(c *cli.Context) (string, error) {
	switch {
	case c.Bool("json") && c.Bool("csv"):
		return "", commandUsagef(c, "give --json or --csv, not both")
	case c.Bool("json"):
		return roles.FormatJSON, nil
	case c.Bool("csv"):
		return roles.FormatCSV, nil
	}
	return roles.FormatTable, nil
}

// fingerprintFlag parses --root-fingerprint, if given.
func fingerprintFlag(c *cli.Context) ([]byte, error) {
	s := c.String("root-fingerprint")
	if s == "" {
		return nil, nil
	}
	var fp config.Fingerprint
	if err := fp.UnmarshalText([]byte(s)); err != nil {
		return nil, commandUsagef(c, "--root-fingerprint: %w", err)
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
		tok, err := roles.TokenFor(f, c.String("sid"))
		if err != nil {
			return "", usageError{err}
		}
		return tok, nil
	}
	return strings.TrimSpace(os.Getenv("PKIBOARD_TOKEN")), nil
}

// countSet returns how many of the named flags are given (a bool flag counts
// when true).
func countSet(c *cli.Context, names ...string) int {
	n := 0
	for _, name := range names {
		if c.IsSet(name) && (c.String(name) != "false") {
			n++
		}
	}
	return n
}

// onceValue is the value of a string flag that may be given once: a repeated
// cli.StringFlag keeps its last value silently, which for --sid would act on
// another student than the operator meant.
type onceValue struct {
	val string
	set bool
}

// Set takes the flag's value, and refuses a second one.
func (o *onceValue) Set(s string) error {
	if o.set {
		return fmt.Errorf("given twice (%q, then %q); give it once", o.val, s)
	}
	o.val, o.set = s, true
	return nil
}

func (o *onceValue) String() string { return o.val }

// onceFlag declares a string flag that may be given once (onceValue); read
// it with c.String(name).
func onceFlag(name, usage string) *cli.GenericFlag {
	return &cli.GenericFlag{Name: name, Usage: usage, Value: &onceValue{}}
}

// daemonConfig loads the config of the daemon a command asks over its
// operator socket: the one --role names, or the config's role, which must be
// ca or board.
func daemonConfig(c *cli.Context) (*config.Config, error) {
	role, _ := lookupFlag(c, "role")
	cfg, err := loadConfig(c, role)
	if err != nil {
		return nil, err
	}
	if cfg.Role != "ca" && cfg.Role != "board" {
		return nil, commandUsagef(c, "give --role ca or --role board")
	}
	return cfg, nil
}

// studentAction is the Action of a student command called name: it loads the
// configuration as the student's, makes the command's logger, and runs run
// with both.
func studentAction(name string, run func(c *cli.Context, cfg *config.Config, log *zap.Logger) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cfg, err := loadConfig(c, "student")
		if err != nil {
			return err
		}
		log, err := newLogger(cfg, name)
		if err != nil {
			return err
		}
		defer log.Sync() //nolint:errcheck // stderr may not support sync
		return run(c, cfg, log)
	}
}
