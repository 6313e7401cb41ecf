package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"pkiboard/internal/config"
)

// runLoad runs the app's flag parsing with args and returns the configuration
// loadConfig builds from them, as runRole would see it.
func runLoad(t *testing.T, args ...string) (*config.Config, error) {
	t.Helper()
	app := newApp()
	var cfg *config.Config
	app.Action = func(c *cli.Context) error {
		var err error
		cfg, err = loadConfig(c, c.String("role"))
		return err
	}
	err := app.Run(append([]string{"pkiboard"}, args...))
	return cfg, err
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pkiboard.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRoleSelection(t *testing.T) {
	withRole := writeConfig(t, "role = \"board\"\n")
	withoutRole := writeConfig(t, "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"flag wins over config", []string{"--config", withRole, "--role", "ca"}, "ca"},
		{"config role used without flag", []string{"--config", withRole}, "board"},
		{"flag alone", []string{"--config", withoutRole, "--role=student"}, "student"},
		{"neither", []string{"--config", withoutRole}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := runLoad(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Role != tt.want {
				t.Errorf("role: got %q want %q", cfg.Role, tt.want)
			}
		})
	}
}

func TestFlagsOverrideConfig(t *testing.T) {
	path := writeConfig(t, "[ca]\nlisten = \"127.0.0.1:9000\"\n[log]\nlevel = \"warn\"\n")
	tests := []struct {
		name  string
		args  []string
		check func(c *config.Config) (got, want string)
	}{
		{"ca listen from file", []string{"--role=ca"},
			func(c *config.Config) (string, string) { return c.CA.Listen, "127.0.0.1:9000" }},
		{"ca listen from flag", []string{"--role=ca", "--listen", "127.0.0.1:0"},
			func(c *config.Config) (string, string) { return c.CA.Listen, "127.0.0.1:0" }},
		{"board listen from flag leaves ca alone", []string{"--role=board", "--listen", "127.0.0.1:7"},
			func(c *config.Config) (string, string) {
				return c.Board.Listen + " " + c.CA.Listen, "127.0.0.1:7 127.0.0.1:9000"
			}},
		{"data dir", []string{"--role=board", "--data-dir", "/srv/board"},
			func(c *config.Config) (string, string) { return c.Board.DataDir, "/srv/board" }},
		{"ca addr for board and student", []string{"--role=student", "--ca-addr", "10.0.0.1:8011"},
			func(c *config.Config) (string, string) {
				return c.Board.CAAddr + " " + c.Student.CAAddr, "10.0.0.1:8011 10.0.0.1:8011"
			}},
		{"board addr", []string{"--role=student", "--board-addr", "10.0.0.2:8002"},
			func(c *config.Config) (string, string) { return c.Student.BoardAddr, "10.0.0.2:8002" }},
		{"log level", []string{"--role=ca", "--log-level", "debug"},
			func(c *config.Config) (string, string) { return c.Log.Level, "debug" }},
		{"log level from file", []string{"--role=ca"},
			func(c *config.Config) (string, string) { return c.Log.Level, "warn" }},
		{"log format", []string{"--role=ca", "--log-format", "json"},
			func(c *config.Config) (string, string) { return c.Log.Format, "json" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := runLoad(t, append([]string{"--config", path}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tt.check(cfg); got != want {
				t.Errorf("got %q want %q", got, want)
			}
		})
	}
}

// TestFlagReplacesBadFileValue checks that the config is validated once,
// after the flags: a flag that replaces a bad value in the file mends it, and
// an error blames the file for its own values and a flag for the flag's.
func TestFlagReplacesBadFileValue(t *testing.T) {
	path := writeConfig(t, "[ca]\nlisten = \"nowhere\"\n")
	cfg, err := runLoad(t, "--config", path, "--role=ca", "--listen", "127.0.0.1:0")
	if err != nil || cfg.CA.Listen != "127.0.0.1:0" {
		t.Fatalf("--listen over a bad ca.listen: got %v", err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no flag", nil, "config " + path + `: ca.listen: "nowhere"`},
		{"a flag that does not mend it", []string{"--log-level", "debug"}, "config " + path + `: ca.listen: "nowhere"`},
		{"a bad flag and a bad file", []string{"--log-level", "loud"},
			`--log-level: "loud" is not one of debug, info, warn, error (it sets log.level); config ` + path + `: ca.listen: "nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runLoad(t, append([]string{"--config", path, "--role=ca"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	path := writeConfig(t, "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad override, named as the flag", []string{"--config", path, "--role=ca", "--listen", "nowhere"}, `--listen: "nowhere" is not host:port`},
		{"bad role flag, named as the flag", []string{"--config", path, "--role=king"}, `--role "king" is not one of`},
		{"missing config", []string{"--config", path + ".missing", "--role=ca"}, "does not exist"},
		{"listen for student", []string{"--config", path, "--role=student", "--listen", "127.0.0.1:1"}, "--listen does not apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runLoad(t, tt.args...)
			var uerr usageError
			if !errors.As(err, &uerr) {
				t.Fatalf("got %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRoleOnlyFlagsRefused(t *testing.T) {
	path := writeConfig(t, "")
	err := newApp().Run([]string{"pkiboard", "--config", path, "--role=ca", "--ids", "a"})
	if err == nil || !strings.Contains(err.Error(), "--ids applies only to --role=student") {
		t.Errorf("got %v, want --ids refused for the CA", err)
	}
}
