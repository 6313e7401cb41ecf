// Package config loads and validates pkiboard's TOML configuration.
//
// A configuration file has a top-level role key and four sections, [log], [ca],
// [board] and [student]; every key has a default (see Default), so a file names
// only what it changes. Loading is strict: an unknown key, a value of the wrong
// type or a value out of range is an error that names the key and the file.
// Relative paths in the file resolve against the file's own directory, so a
// configuration in any directory describes a self-contained installation.
//
// The package knows nothing about what the roles do with the values; it only
// guarantees that what it returns is well formed.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"pkiboard/session"
)

// Roles lists the roles a configuration may select. The adversary has no
// section of its own: it takes its addresses and attack from flags and uses
// [log].
var Roles = []string{"ca", "board", "student", "adversary"}

// Config is a whole pkiboard configuration.
type Config struct {
	// Role is the default role (one of Roles); --role wins.
	Role    string        `toml:"role"`
	Log     LogConfig     `toml:"log"`
	CA      CAConfig      `toml:"ca"`
	Board   BoardConfig   `toml:"board"`
	Student StudentConfig `toml:"student"`

	// Path is the file the configuration was loaded from ("" for Default).
	Path string `toml:"-"`
}

// LogConfig selects how every role logs.
type LogConfig struct {
	Level  string `toml:"level"`  // debug, info, warn or error
	Format string `toml:"format"` // console or json
	File   string `toml:"file"`   // a daemon also appends its log here (mode 0600); "" for stderr only
}

// Limits bounds what one network peer may cost a daemon.
type Limits struct {
	MaxFrame         int      `toml:"max_frame"`         // largest frame accepted, bytes
	MaxConns         int      `toml:"max_conns"`         // concurrent connections
	ReadTimeout      Duration `toml:"read_timeout"`      // per frame read
	WriteTimeout     Duration `toml:"write_timeout"`     // per frame write
	HandshakeTimeout Duration `toml:"handshake_timeout"` // whole exchange before data flows
	IdleTimeout      Duration `toml:"idle_timeout"`      // between requests on one connection
	ShutdownTimeout  Duration `toml:"shutdown_timeout"`  // how long a stop waits for sessions in flight

	// What peers that have proven nothing may cost (PROTOCOL.md §6.2).
	MaxUnproven int     `toml:"max_unproven"` // concurrent connections whose peer has proven nothing
	SourceBurst int     `toml:"source_burst"` // failures a source (IPv4 address, IPv6 /64) may have at once; 0: no limit
	SourceRate  float64 `toml:"source_rate"`  // failures a second a source is forgiven
}

// HTTP configures a daemon's HTTP endpoint (package web): /metrics,
// /healthz, /readyz and the staff console.
type HTTP struct {
	// HTTPListen is the endpoint's host:port; "" turns it off. A host that
	// is not loopback needs both TLS files.
	HTTPListen  string `toml:"http_listen"`
	HTTPTLSCert string `toml:"http_tls_cert"` // PEM certificate (chain) of the endpoint
	HTTPTLSKey  string `toml:"http_tls_key"`  // PEM private key of the endpoint
}

// CAConfig configures the certificate authority.
type CAConfig struct {
	Listen  string `toml:"listen"`
	DataDir string `toml:"data_dir"`
	HTTP

	CommonName   string `toml:"common_name"`
	Organization string `toml:"organization"`
	Country      string `toml:"country"`
	KeyAlgorithm string `toml:"key_algorithm"`

	KeyPassphraseEnv  string `toml:"key_passphrase_env"`
	KeyPassphraseFile string `toml:"key_passphrase_file"`

	RootValidity Duration `toml:"root_validity"`
	CertValidity Duration `toml:"cert_validity"`
	CRLValidity  Duration `toml:"crl_validity"`
	// StatusValidity is how long a board's status, which the CA pushes to the
	// board's watch and the board staples to each session, stays valid
	// (PROTOCOL.md §4.4).
	StatusValidity Duration `toml:"status_validity"`

	Policy     string   `toml:"policy"` // open or token
	RosterFile string   `toml:"roster_file"`
	SIDPattern Pattern  `toml:"sid_pattern"`
	TokenTTL   Duration `toml:"token_ttl"`
	BoardName  string   `toml:"board_name"`

	Limits
}

// BoardConfig configures the submission board.
type BoardConfig struct {
	Listen  string `toml:"listen"`
	DataDir string `toml:"data_dir"`
	HTTP
	Name   string `toml:"name"`
	CAAddr string `toml:"ca_addr"`

	RootFile        string      `toml:"root_file"`
	RootFingerprint Fingerprint `toml:"root_fingerprint"`
	EnrollTokenFile string      `toml:"enroll_token_file"`
	KeyAlgorithm    string      `toml:"key_algorithm"`

	CRLRefresh Duration `toml:"crl_refresh"`
	CRLStale   string   `toml:"crl_stale"` // fail or warn

	AllowRC4      bool `toml:"allow_rc4"`
	MaxSubmission Size `toml:"max_submission"`

	HelloWindow Duration `toml:"hello_window"` // how far a ClientHello's time may be from the board's clock

	Limits

	LogContent   bool     `toml:"log_content"`   // log the text of message submissions
	PartialTTL   Duration `toml:"partial_ttl"`   // how long an interrupted upload is kept
	PartialQuota Size     `toml:"partial_quota"` // the most bytes one SID's interrupted uploads may hold

	// AssignmentsFile is the course's assignments (TOML, [[assignment]]
	// tables), read again when it changes; "" serves the one implicit
	// assignment "lab".
	AssignmentsFile string `toml:"assignments_file"`
	// RosterFile is the course's roster (CSV sid[,name[,email]]), which
	// `pkiboard progress` and `export` read; "" for none.
	RosterFile string `toml:"roster_file"`
}

// StudentConfig configures the student client.
type StudentConfig struct {
	CAAddr    string `toml:"ca_addr"`
	BoardAddr string `toml:"board_addr"`
	DataDir   string `toml:"data_dir"`
	BoardName string `toml:"board_name"`

	RootFingerprint Fingerprint `toml:"root_fingerprint"`
	KeyAlgorithm    string      `toml:"key_algorithm"`
	Suites          Suites      `toml:"suites"`
	Parallel        int         `toml:"parallel"`
	TokenFile       string      `toml:"token_file"`
	// Assignment is the assignment the student submits to (--assignment
	// overrides); "lab", the lab's implicit one, by default.
	Assignment string `toml:"assignment"`

	Timeout Duration `toml:"timeout"`
}

// Default returns the built-in configuration: the one-machine demo layout with the
// original course project's ports.
func Default() *Config {
	daemon := Limits{
		MaxFrame:         64 << 10,
		MaxConns:         1024,
		ReadTimeout:      Duration(10 * time.Second),
		WriteTimeout:     Duration(10 * time.Second),
		HandshakeTimeout: Duration(10 * time.Second),
		IdleTimeout:      Duration(60 * time.Second),
		ShutdownTimeout:  Duration(10 * time.Second),
		MaxUnproven:      256,
		SourceBurst:      32,
		SourceRate:       4,
	}
	board := daemon
	board.MaxFrame = 128 << 10
	return &Config{
		Log: LogConfig{Level: "info", Format: "console"},
		CA: CAConfig{
			Listen:         "127.0.0.1:8011",
			DataDir:        "data/ca",
			HTTP:           HTTP{HTTPListen: "127.0.0.1:8013"},
			CommonName:     "CUHK Course Root CA",
			KeyAlgorithm:   "ecdsa-p256",
			RootValidity:   Duration(10 * 365 * 24 * time.Hour),
			CertValidity:   Duration(180 * 24 * time.Hour),
			CRLValidity:    Duration(7 * 24 * time.Hour),
			StatusValidity: Duration(time.Hour),
			Policy:         "open",
			SIDPattern:     mustPattern(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`),
			TokenTTL:       Duration(72 * time.Hour),
			BoardName:      "blackboard",
			Limits:         daemon,
		},
		Board: BoardConfig{
			Listen:          "127.0.0.1:8002",
			DataDir:         "data/board",
			HTTP:            HTTP{HTTPListen: "127.0.0.1:8003"},
			Name:            "blackboard",
			CAAddr:          "127.0.0.1:8011",
			EnrollTokenFile: "data/ca/board-enroll.token",
			KeyAlgorithm:    "ecdsa-p256",
			CRLRefresh:      Duration(time.Minute),
			CRLStale:        "fail",
			MaxSubmission:   Size(1 << 30),
			HelloWindow:     Duration(5 * time.Minute),
			Limits:          board,
			PartialTTL:      Duration(72 * time.Hour),
			PartialQuota:    Size(2 << 30),
		},
		Student: StudentConfig{
			CAAddr:       "127.0.0.1:8011",
			BoardAddr:    "127.0.0.1:8002",
			DataDir:      "data/student",
			BoardName:    "blackboard",
			KeyAlgorithm: "ecdsa-p256",
			Suites:       Suites{Suite(session.SuiteAES256GCM)},
			Parallel:     1,
			Assignment:   "lab",
			Timeout:      Duration(60 * time.Second),
		},
	}
}

// Load reads the configuration file at path over the defaults, rejects unknown
// keys, resolves relative paths against the file's directory and validates the
// result.
func Load(path string) (*Config, error) {
	cfg, err := Read(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Read is Load without the validation, for a caller that overrides values
// (the command line) and then calls Validate once on the result, so that a bad
// value in the file that a flag replaces is no error.
func Read(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config file %s does not exist (give one with --config FILE; the repository's config.toml is a working example)", path)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return decode(data, path)
}

// Parse reads a configuration from data, the contents of the file at path, as
// Load does: over the defaults, rejecting unknown keys, resolving relative paths
// against path's directory, and validating the result. Every error names path.
// It reads no file itself, so that it can be tested on arbitrary bytes.
func Parse(data []byte, path string) (*Config, error) {
	cfg, err := decode(data, path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// decode is Parse without the validation.
func decode(data []byte, path string) (*Config, error) {
	cfg := Default()
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			if perr.LastKey != "" {
				return nil, fmt.Errorf("config %s: line %d: key %s: %s", path, perr.Position.Line, perr.LastKey, perr.Message)
			}
			return nil, fmt.Errorf("config %s: line %d: %s", path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("config %s: unknown key %s (check the spelling against the shipped config.toml)", path, strings.Join(keys, ", "))
	}
	cfg.Path = path
	cfg.resolvePaths(filepath.Dir(path))
	if cfg.Student.DataDir == "" {
		// "" asks for the per-user directory; if the system names none, it
		// stays "" and Validate says so.
		cfg.Student.DataDir, _ = UserDataDir()
	}
	return cfg, nil
}

// UserDataDir is the student's data directory when student.data_dir is "":
// pkiboard/student in the user's own configuration directory (os.UserConfigDir),
// the place each OS gives a program's per-user files — on Linux
// $XDG_CONFIG_HOME or ~/.config, on macOS ~/Library/Application Support, on
// Windows %AppData%. It holds the student's private keys: the student role
// creates it with mode 0700 and the keys with 0600; on Windows, where mode
// bits are not access control, it inherits the ACL of the user's profile,
// which only the user, SYSTEM and Administrators may read.
func UserDataDir() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "pkiboard", "student"), nil
}

// resolvePaths makes every relative path in the configuration relative to dir.
func (c *Config) resolvePaths(dir string) {
	for _, p := range []*string{
		&c.Log.File,
		&c.CA.DataDir, &c.CA.KeyPassphraseFile, &c.CA.RosterFile,
		&c.CA.HTTPTLSCert, &c.CA.HTTPTLSKey, &c.Board.HTTPTLSCert, &c.Board.HTTPTLSKey,
		&c.Board.DataDir, &c.Board.RootFile, &c.Board.EnrollTokenFile,
		&c.Board.AssignmentsFile, &c.Board.RosterFile,
		&c.Student.DataDir, &c.Student.TokenFile,
	} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}
