// Command pkiboard is a small public-key infrastructure for a course: one
// executable that runs as the certificate authority (--role=ca), as the
// submission board that authenticates students by certificate (--role=board), as
// the student client (--role=student --ids a,b,c), or as the adversary between
// student and board that demonstrates the attacks the protocol defeats
// (--role=adversary), plus the operator commands that look after them. See
// README.md.
//
// main only turns flags and the config file into a configuration and a logger,
// and hands them to a role in package roles.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"pkiboard/adversary"
	"pkiboard/internal/config"
	"pkiboard/internal/logging"
	"pkiboard/roles"
)

// version is set at build time by the Makefile (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// PKIBOARD_CPUPROFILE=FILE writes a CPU profile of the whole run, for
	// `go tool pprof` (see README, Performance).
	if path := os.Getenv("PKIBOARD_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "pkiboard: PKIBOARD_CPUPROFILE: %v\n", err)
			return 2
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "pkiboard: %v\n", err)
		var uerr usageError
		if errors.As(err, &uerr) {
			return 2
		}
		if intr := (*roles.InterruptedError)(nil); errors.As(err, &intr) {
			return 130 // as a shell reports a command ended by Ctrl-C
		}
		return 1
	}
	return 0
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "pkiboard",
		Usage:   "a small public-key infrastructure for course submissions",
		Version: version,
		UsageText: `pkiboard [--config FILE] --role=ca
pkiboard [--config FILE] --role=board
pkiboard [--config FILE] --role=student --ids SID1,SID2,SID3 [--assignment ID] [--message TEXT | --report FILE] [--parallel N]
pkiboard [--config FILE] --role=adversary --listen ADDR --upstream ADDR --attack NAME [--cert FILE --key FILE [--status FILE]]
pkiboard COMMAND [options]   (operator commands below; pkiboard COMMAND --help)`,
		Description: `One executable, three roles, and the adversary:
   --role=ca        the certificate authority: issues student and board certificates, keeps
                    a durable record, revokes, publishes a CRL
   --role=board     the submission board: accepts sessions only from certificates the CA
                    issued, stores each submission durably and returns a signed receipt
   --role=student   the client: for each --ids SID, enrolls with the CA, opens a session
                    with the board, submits, and keeps the receipt
   --role=adversary a man in the middle between student and board, for teaching: runs one
                    --attack on every session it relays, and logs what it did and saw.
                    It has no config section (only [log] applies). The attacks:
` + indent(adversary.Describe(), "                      ") + `

The role may also come from the config file's top-level "role" key; --role wins.
Settings come from --config (default config.toml); the flags below override them.
Each operator command has its own flags: pkiboard COMMAND --help.

Examples:
   pkiboard --role=ca                       the CA, with the settings in ./config.toml
   pkiboard --config board.toml --role=board
   pkiboard --role=student --ids 1155000001 --report report.pdf
   pkiboard certs --help`,
		CustomAppHelpTemplate: strings.Replace(cli.AppHelpTemplate, "GLOBAL OPTIONS:", "OPTIONS OF THE ROLES:", 2),
		Flags: append(roleFlags(),
			&cli.StringFlag{Name: "role", Usage: "run as `ROLE`: ca, board, student or adversary"},
			&cli.StringFlag{Name: "ids", Usage: "student: comma-separated student `IDS` to enroll and submit for"},
			&cli.StringFlag{Name: "message", Usage: "student: submit `TEXT` instead of the default ten lines"},
			&cli.StringFlag{Name: "report", Usage: "student: submit the contents of `FILE` (any size; resumable)"},
			&cli.StringFlag{Name: "assignment", Usage: "student: submit to assignment `ID`", DefaultText: "student.assignment in the config"},
			&cli.IntFlag{Name: "parallel", Usage: "student: process `N` IDs at once", DefaultText: "student.parallel in the config"},
			&cli.StringFlag{Name: "upstream", Usage: "adversary: relay to the board at `ADDR` (host:port)"},
			&cli.StringFlag{Name: "attack", Usage: "adversary: run attack `NAME` (see above)"},
			&cli.StringFlag{Name: "cert", Usage: "adversary: its own certificate `FILE` (PEM), e.g. from `pkiboard enroll --sid mallory`"},
			&cli.StringFlag{Name: "key", Usage: "adversary: the private key `FILE` of --cert"},
			&cli.StringFlag{Name: "status", Usage: "adversary: impersonate-board staples the board status in `FILE` (e.g. a stolen status.bin) instead of one it signs itself"},
		),
		HideHelpCommand: true,
		Commands:        checkCommands(operatorCommands()),
		Action:          runRole,
		OnUsageError:    onUsageError,
	}
}

// roleFlags are the flags of the roles (pkiboard --role=…): where the
// config is, and the overrides of its keys. Each operator command takes only
// the ones it uses (caFlags, boardFlags, daemonFlags, studentFlags).
func roleFlags() []cli.Flag {
	return []cli.Flag{
		configFlag(),
		&cli.StringFlag{Name: "listen", Usage: "ca/board: listen on `ADDR` (host:port)"},
		&cli.StringFlag{Name: "data-dir", Usage: "keep this role's state in `DIR`"},
		&cli.StringFlag{Name: "ca-addr", Usage: "board/student: the CA is at `ADDR` (host:port)"},
		&cli.StringFlag{Name: "board-addr", Usage: "student: the board is at `ADDR` (host:port)"},
		logLevelFlag(),
		logFormatFlag(),
		&cli.StringFlag{Name: "log-file", Usage: "ca/board: also append the log to `FILE` (mode 0600)"},
	}
}

func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Value: "config.toml", Usage: "read settings from `FILE`"}
}

func logLevelFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-level", Usage: "log at `LEVEL`: debug, info, warn or error", DefaultText: "log.level in the config"}
}

func logFormatFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-format", Usage: "log as `FORMAT`: console or json", DefaultText: "log.format in the config"}
}

// caFlags are the flags of the CA operator commands, which read or change
// the CA's data directory (or ask the CA running on it).
func caFlags() []cli.Flag {
	return []cli.Flag{
		configFlag(),
		&cli.StringFlag{Name: "data-dir", Usage: "the CA's data directory `DIR`", DefaultText: "ca.data_dir in the config"},
	}
}

// boardFlags are the flags of the board operator commands, which read or
// change the board's data directory (or ask the board running on it).
func boardFlags() []cli.Flag {
	return []cli.Flag{
		configFlag(),
		&cli.StringFlag{Name: "data-dir", Usage: "the board's data directory `DIR`", DefaultText: "board.data_dir in the config"},
	}
}

// daemonFlags are the flags of the commands for either daemon, chosen with
// --role.
func daemonFlags() []cli.Flag {
	return []cli.Flag{
		configFlag(),
		&cli.StringFlag{Name: "data-dir", Usage: "the daemon's data directory `DIR`", DefaultText: "ca.data_dir or board.data_dir in the config"},
	}
}

// studentFlags are the flags of the student's commands, which talk to the
// CA (and, with board set, to the board), keep the student's files in
// student.data_dir, and log what they do.
func studentFlags(board bool) []cli.Flag {
	flags := []cli.Flag{
		configFlag(),
		&cli.StringFlag{Name: "ca-addr", Usage: "the CA is at `ADDR` (host:port)", DefaultText: "student.ca_addr in the config"},
	}
	if board {
		flags = append(flags, &cli.StringFlag{Name: "board-addr", Usage: "the board is at `ADDR` (host:port)", DefaultText: "student.board_addr in the config"})
	}
	return append(flags,
		&cli.StringFlag{Name: "data-dir", Usage: "the student role keeps each SID's key, certificate and receipts in `DIR`/SID", DefaultText: "student.data_dir in the config"},
		logLevelFlag(), logFormatFlag())
}

// loadConfig reads the config file and applies the flag overrides for role.
func loadConfig(c *cli.Context, role string) (*config.Config, error) {
	// Validated once, after the flags: a flag may replace a bad value.
	cfg, err := config.Read(flagString(c, "config"))
	if err != nil {
		return nil, usageError{err}
	}
	if role == "" {
		role = cfg.Role
	} else if !slices.Contains(config.Roles, role) {
		// Said here, not by Validate: the mistake is on the command line.
		return nil, usagef("--role %q is not one of %s", role, strings.Join(config.Roles, ", "))
	}
	// fromFlag maps each config key a flag replaced to the flag, so that a
	// bad value is blamed on what gave it.
	fromFlag := map[string]string{}
	set := func(flag, key string, dst *string) {
		if v, ok := lookupFlag(c, flag); ok {
			fromFlag[key] = flag
			*dst = v
		}
	}
	set("log-level", "log.level", &cfg.Log.Level)
	set("log-format", "log.format", &cfg.Log.Format)
	set("log-file", "log.file", &cfg.Log.File)
	set("ca-addr", "board.ca_addr", &cfg.Board.CAAddr)
	set("ca-addr", "student.ca_addr", &cfg.Student.CAAddr)
	set("board-addr", "student.board_addr", &cfg.Student.BoardAddr)
	switch role {
	case "ca":
		set("listen", "ca.listen", &cfg.CA.Listen)
		set("data-dir", "ca.data_dir", &cfg.CA.DataDir)
	case "board":
		set("listen", "board.listen", &cfg.Board.Listen)
		set("data-dir", "board.data_dir", &cfg.Board.DataDir)
	case "student":
		set("data-dir", "student.data_dir", &cfg.Student.DataDir)
		if _, ok := lookupFlag(c, "listen"); ok {
			return nil, usagef("--listen does not apply to the student role")
		}
	case "adversary":
		// No config section: --listen is taken by adversaryOptions.
		if _, ok := lookupFlag(c, "data-dir"); ok {
			return nil, usagef("--data-dir does not apply to the adversary role (it keeps no state)")
		}
	}
	if c.IsSet("parallel") {
		fromFlag["student.parallel"] = "parallel"
		cfg.Student.Parallel = c.Int("parallel")
	}
	cfg.Role = role
	if err := cfg.Validate(); err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			return nil, usageError{blame(cfg.Path, problems, fromFlag)}
		}
		return nil, usagef("config %s: %w", cfg.Path, err)
	}
	return cfg, nil
}

// blame says each problem of a configuration as the mistake of what gave the
// bad value: a flag (fromFlag maps keys to the flags that set them), or else
// the config file at path.
func blame(path string, problems config.Problems, fromFlag map[string]string) error {
	var inFlags, inFile []string
	for _, p := range problems {
		if flag, ok := fromFlag[p.Key]; ok {
			inFlags = append(inFlags, fmt.Sprintf("--%s: %s (it sets %s)", flag, p.Text, p.Key))
		} else {
			inFile = append(inFile, p.String())
		}
	}
	if len(inFile) > 0 {
		inFlags = append(inFlags, fmt.Sprintf("config %s: %s", path, strings.Join(inFile, "; ")))
	}
	return errors.New(strings.Join(inFlags, "; "))
}

// lookupFlag returns the value of a string flag given on the command line at
// any level (before or after a subcommand's name), the innermost winning.
func lookupFlag(c *cli.Context, name string) (string, bool) {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return cc.String(name), true
		}
	}
	return "", false
}

// flagString is lookupFlag with the flag's default when it was not given.
func flagString(c *cli.Context, name string) string {
	if v, ok := lookupFlag(c, name); ok {
		return v
	}
	return c.String(name)
}

func newLogger(cfg *config.Config, name string) (*zap.Logger, error) {
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format, nil)
	if err != nil {
		return nil, usageError{err}
	}
	return log.Named(name), nil
}

// newDaemonLogger is newLogger for the CA and the board: they also append
// their log to log.file, when it is set. The returned function closes it.
func newDaemonLogger(cfg *config.Config, name string) (*zap.Logger, func(), error) {
	if cfg.Log.File == "" {
		log, err := newLogger(cfg, name)
		return log, func() {}, err
	}
	f, err := logging.OpenFile(cfg.Log.File)
	if err != nil {
		return nil, nil, err
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format, zapcore.NewMultiWriteSyncer(zapcore.Lock(os.Stderr), zapcore.Lock(f)))
	if err != nil {
		f.Close()
		return nil, nil, usageError{err}
	}
	return log.Named(name), func() { log.Sync(); f.Close() }, nil //nolint:errcheck // stderr may not support sync
}

// runRole is the action of `pkiboard --role=…`.
func runRole(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("unknown command %q (see pkiboard --help)", c.Args().First())
	}
	cfg, err := loadConfig(c, c.String("role"))
	if err != nil {
		return err
	}
	if cfg.Role == "" {
		return usagef("no role: give --role=ca, --role=board, --role=student or --role=adversary, or set role in %s", cfg.Path)
	}
	if cfg.Role != "student" {
		for _, f := range []string{"ids", "message", "report", "assignment", "parallel"} {
			if c.IsSet(f) {
				return usagef("--%s applies only to --role=student", f)
			}
		}
	}
	if cfg.Role != "adversary" {
		for _, f := range adversaryFlags {
			if c.IsSet(f) {
				return usagef("--%s applies only to --role=adversary", f)
			}
		}
	}
	if c.IsSet("log-file") && cfg.Role != "ca" && cfg.Role != "board" {
		return usagef("--log-file applies only to --role=ca and --role=board")
	}
	var (
		log     *zap.Logger
		closeFn = func() {}
		screen  = roles.NewScreen(os.Stderr) // the student's: its log and its progress bars
	)
	switch cfg.Role {
	case "ca", "board":
		log, closeFn, err = newDaemonLogger(cfg, cfg.Role)
	case "student":
		log, err = logging.New(cfg.Log.Level, cfg.Log.Format, screen)
		if err != nil {
			err = usageError{err}
		} else {
			log = log.Named(cfg.Role)
		}
	default:
		log, err = newLogger(cfg, cfg.Role)
	}
	if err != nil {
		return err
	}
	defer closeFn()
	defer log.Sync() //nolint:errcheck // stderr may not support sync

	switch cfg.Role {
	case "ca":
		return roles.RunCA(c.Context, cfg, log)
	case "board":
		return roles.RunBoard(c.Context, cfg, log)
	case "adversary":
		opts, err := adversaryOptions(c)
		if err != nil {
			return err
		}
		return roles.RunAdversary(c.Context, log, opts)
	default:
		opts, err := studentOptions(c)
		if err != nil {
			return err
		}
		opts.Screen, opts.Command = screen, os.Args
		return roles.RunStudent(c.Context, cfg, log, opts)
	}
}

// adversaryFlags are the flags only the adversary takes.
var adversaryFlags = []string{"upstream", "attack", "cert", "key", "status"}

func adversaryOptions(c *cli.Context) (roles.AdversaryOptions, error) {
	listen, _ := lookupFlag(c, "listen")
	opts := roles.AdversaryOptions{
		Listen:   listen,
		Upstream: c.String("upstream"),
		Attack:   c.String("attack"),
		CertFile: c.String("cert"),
		KeyFile:  c.String("key"),
		Status:   c.String("status"),
	}
	if opts.Listen == "" || opts.Attack == "" || opts.Upstream == "" && opts.Attack != adversary.ImpersonateBoard {
		return opts, usagef("the adversary role needs --listen ADDR, --upstream ADDR (the board) and --attack NAME, one of: %s",
			strings.Join(adversary.Attacks(), ", "))
	}
	if !slices.Contains(adversary.Attacks(), opts.Attack) {
		return opts, usagef("--attack %q: the attacks are %s", opts.Attack, strings.Join(adversary.Attacks(), ", "))
	}
	return opts, nil
}

// indent prefixes every line of text with prefix.
func indent(text, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(text, "\n"), "\n", "\n"+prefix)
}

func studentOptions(c *cli.Context) (roles.StudentOptions, error) {
	var ids []string
	for _, id := range strings.Split(c.String("ids"), ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return roles.StudentOptions{}, usagef("the student role needs --ids SID1,SID2,…")
	}
	if c.IsSet("message") && c.IsSet("report") {
		return roles.StudentOptions{}, usagef("give --message or --report, not both")
	}
	if c.IsSet("message") && c.String("message") == "" {
		return roles.StudentOptions{}, usagef("--message must not be empty")
	}
	return roles.StudentOptions{
		IDs:        ids,
		Message:    c.String("message"),
		Report:     c.String("report"),
		Assignment: c.String("assignment"),
		Out:        os.Stdout,
	}, nil
}
