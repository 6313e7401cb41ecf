package deploy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/BurntSushi/toml"

	"pkiboard/internal/config"
)

// TestConfigsLoad checks each role's config with the real, strict loader,
// and that it holds only its role's section, with its state where the units
// put it.
func TestConfigsLoad(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/home/student/.config") // for student.data_dir = ""
	tests := []struct {
		file, role string
		dataDir    func(*config.Config) string
		want       string
	}{
		{"ca.toml", "ca", func(c *config.Config) string { return c.CA.DataDir }, "/var/lib/pkiboard/ca"},
		{"board.toml", "board", func(c *config.Config) string { return c.Board.DataDir }, "/var/lib/pkiboard/board"},
		{"student.toml", "student", func(c *config.Config) string { return c.Student.DataDir }, "/home/student/.config/pkiboard/student"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := config.Load(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Role != tt.role {
				t.Errorf("role: got %q want %q", cfg.Role, tt.role)
			}
			if got := tt.dataDir(cfg); got != tt.want {
				t.Errorf("%s.data_dir: got %q want %q", tt.role, got, tt.want)
			}
			var raw map[string]any
			if _, err := toml.DecodeFile(tt.file, &raw); err != nil {
				t.Fatal(err)
			}
			for key := range raw {
				if key != "role" && key != tt.role {
					t.Errorf("%s has [%s] or %s: want only role and [%s]", tt.file, key, key, tt.role)
				}
			}
		})
	}
	ca, err := config.Load("ca.toml")
	if err != nil {
		t.Fatal(err)
	}
	if ca.CA.Policy != "token" {
		t.Errorf("ca.policy: got %q want token outside a demo", ca.CA.Policy)
	}
	if want := "/run/credentials/pkiboard-ca.service/" + credentialName(t); ca.CA.KeyPassphraseFile != want {
		t.Errorf("ca.key_passphrase_file: got %q, want %q, where LoadCredential= puts it", ca.CA.KeyPassphraseFile, want)
	}
	board, err := config.Load("board.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(board.Board.EnrollTokenFile, "/var/lib/pkiboard/board/") {
		t.Errorf("board.enroll_token_file: got %q, want it in the board's data directory, which only pkiboard-board reads", board.Board.EnrollTokenFile)
	}
}

// credentialName returns the name LoadCredential= gives the CA's passphrase.
func credentialName(t *testing.T) string {
	unit := readUnit(t, "pkiboard-ca.service")
	cred := unit["LoadCredential"]
	if len(cred) != 1 {
		t.Fatalf("pkiboard-ca.service: got LoadCredential=%q, want one", cred)
	}
	name, _, _ := strings.Cut(cred[0], ":")
	return name
}

// readUnit returns the assignments of the unit file systemd/name, by key.
func readUnit(t *testing.T, name string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is no assignment", name, line)
		}
		unit[k] = append(unit[k], v)
	}
	return unit
}

// TestUnitsHardening checks that each unit keeps what the brief of the
// deployment kit asks for: a user of its own from sysusers.d, a private
// state directory, the sandbox, the restart policy.
func TestUnitsHardening(t *testing.T) {
	users, err := os.ReadFile("sysusers.d/pkiboard.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"ca", "board"} {
		name := "pkiboard-" + role + ".service"
		t.Run(name, func(t *testing.T) {
			unit := readUnit(t, name)
			want := map[string]string{
				"User":                    "pkiboard-" + role,
				"Group":                   "pkiboard-" + role,
				"StateDirectory":          "pkiboard/" + role,
				"StateDirectoryMode":      "0700",
				"UMask":                   "0077",
				"ProtectSystem":           "strict",
				"ProtectHome":             "yes",
				"NoNewPrivileges":         "yes",
				"PrivateTmp":              "yes",
				"PrivateDevices":          "yes",
				"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
				"CapabilityBoundingSet":   "",
				"SystemCallFilter":        "@system-service",
				"Restart":                 "on-failure",
				"RestartSec":              "5s",
				"KillSignal":              "SIGTERM",
				"SystemCallArchitectures": "native",
				"ExecStart":               "/usr/local/bin/pkiboard --config /etc/pkiboard/" + role + ".toml --role=" + role,
			}
			for k, v := range want {
				if got := unit[k]; !slices.Equal(got, []string{v}) {
					t.Errorf("%s=: got %q want %q", k, got, v)
				}
			}
			for _, k := range []string{"DynamicUser", "PrivateUsers"} {
				if _, ok := unit[k]; ok {
					t.Errorf("%s= is set: the operator commands run as the daemon's named user, whose uid the socket checks", k)
				}
			}
			if !regexp.MustCompile(`(?m)^u\s+pkiboard-` + role + `\s`).Match(users) {
				t.Errorf("sysusers.d/pkiboard.conf makes no user pkiboard-%s", role)
			}
		})
	}
}

// TestUnitsVerify runs systemd-analyze verify on the units, with ExecStart
// pointing at a real pkiboard binary (verify checks that it is executable).
// Any output (an unknown key is only a warning) fails.
func TestUnitsVerify(t *testing.T) {
	analyze := need(t, "systemd-analyze", "systemd", "PKIBOARD_REQUIRE_SYSTEMD")
	bin := hostBinary(t)
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"pkiboard-ca.service", "pkiboard-board.service"} {
		data, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("ExecStart=/usr/local/bin/pkiboard ")) {
			t.Fatalf("%s: ExecStart does not run /usr/local/bin/pkiboard", name)
		}
		data = bytes.ReplaceAll(data, []byte("/usr/local/bin/pkiboard"), []byte(bin))
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, path)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestPrometheus checks the scrape config and the alert rules with promtool,
// and runs the rules' unit tests (alerts_test.yml), which make each alert
// fire, and not fire, on series made for it.
func TestPrometheus(t *testing.T) {
	promtool := need(t, "promtool", "prometheus", "PKIBOARD_REQUIRE_PROMTOOL")
	for _, args := range [][]string{
		{"check", "config", "prometheus/prometheus.yml"},
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// metricNames are the metrics the daemons export (the shared list of issue
// 15); the alert rules may use no other.
var metricNames = []string{
	"pkiboard_sessions_total", "pkiboard_enrollments_total", "pkiboard_refusals_total",
	"pkiboard_received_bytes_total", "pkiboard_handshake_duration_seconds", "pkiboard_upload_duration_seconds",
	"pkiboard_store_commit_duration_seconds", "pkiboard_store_commit_batch_size",
	"pkiboard_crl_number", "pkiboard_crl_next_update_timestamp_seconds", "pkiboard_crl_this_update_timestamp_seconds",
	"pkiboard_certificate_not_after_timestamp_seconds",
	"pkiboard_open_connections", "pkiboard_max_connections",
	"pkiboard_partial_uploads", "pkiboard_partial_upload_bytes",
}

// TestAlertExpressions checks the two alerts' expressions and that every
// metric the rules name is one the daemons export: promtool cannot know a
// misspelt metric, whose alert would simply never fire.
func TestAlertExpressions(t *testing.T) {
	data, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range []string{
		"expr: pkiboard_crl_next_update_timestamp_seconds - time() < 3600\n",
		`expr: pkiboard_certificate_not_after_timestamp_seconds{certificate="board"} - time() < 7 * 86400` + "\n",
	} {
		if !bytes.Contains(data, []byte(expr)) {
			t.Errorf("alerts.yml has no %q", expr)
		}
	}
	for _, m := range regexp.MustCompile(`pkiboard_[a-z_]+`).FindAll(data, -1) {
		if !slices.Contains(metricNames, string(m)) {
			t.Errorf("alerts.yml names %s, which no daemon exports", m)
		}
	}
}

// need returns the path of the command name, installing Debian's package pkg
// with apt-get when it is absent and this runs as root. Absent otherwise, the
// test is skipped, unless the environment variable require is 1 (make test
// sets it), which fails it.
func need(t *testing.T, name, pkg, require string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if runtime.GOOS == "linux" && os.Geteuid() == 0 {
		t.Logf("%s is absent; installing Debian's %s", name, pkg)
		install := exec.Command("sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends "+pkg)
		install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("apt-get install %s: %v\n%s", pkg, err, out)
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv(require) == "1" {
		t.Fatalf("%s is absent and cannot be installed here (not root, or not Debian); %s=1 requires it", name, require)
	}
	t.Skipf("%s is absent, and only root installs it (apt-get install %s); set %s=1 to fail instead", name, pkg, require)
	return ""
}

var (
	hostOnce sync.Once
	hostDir  string
	hostErr  error
	hostOut  []byte
)

// testVersion is the version the tests build with.
const testVersion = "v0.0.0-deploytest"

// hostBinary runs make release for this machine's platform alone, once, into
// a directory of its own, and returns the binary.
func hostBinary(t *testing.T) string {
	t.Helper()
	hostOnce.Do(func() {
		if hostDir, hostErr = os.MkdirTemp("", "pkiboard-release-*"); hostErr != nil {
			return
		}
		cmd := exec.Command("make", "--no-print-directory", "-C", "..", "release",
			"RELEASE_TARGETS="+runtime.GOOS+"/"+runtime.GOARCH, "DIST="+hostDir, "VERSION="+testVersion)
		hostOut, hostErr = cmd.CombinedOutput()
	})
	if hostErr != nil {
		t.Fatalf("make release: %v\n%s", hostErr, hostOut)
	}
	return filepath.Join(hostDir, releaseName(runtime.GOOS, runtime.GOARCH))
}

func releaseName(goos, goarch string) string {
	if goos == "windows" {
		return "pkiboard-" + goos + "-" + goarch + ".exe"
	}
	return "pkiboard-" + goos + "-" + goarch
}

func TestMain(m *testing.M) {
	code := m.Run()
	if hostDir != "" {
		os.RemoveAll(hostDir)
	}
	os.Exit(code)
}

// TestRelease checks make release on this machine's platform: the binary
// prints the version it was built with, and SHA256SUMS holds its hash in
// the format sha256sum -c and shasum -a 256 -c read.
func TestRelease(t *testing.T) {
	bin := hostBinary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "pkiboard version "+testVersion {
		t.Errorf("%s --version: got %q, %v; want %q", filepath.Base(bin), out, err, "pkiboard version "+testVersion)
	}
	sums, err := os.ReadFile(filepath.Join(filepath.Dir(bin), "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:]) + "  " + filepath.Base(bin) + "\n"; string(sums) != want {
		t.Errorf("SHA256SUMS: got %q want %q", sums, want)
	}
	cmd := exec.Command("sha256sum", "-c", "SHA256SUMS")
	cmd.Dir = filepath.Dir(bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS: %v\n%s", err, out)
	}
}

// TestMakefileTargets checks the Makefile's promises: release builds the
// five platforms students use, and make test runs make cross, which vets and
// builds each of them.
func TestMakefileTargets(t *testing.T) {
	data, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^RELEASE_TARGETS \?= (.*)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("Makefile sets no RELEASE_TARGETS")
	}
	targets := strings.Fields(string(m[1]))
	for _, want := range []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64"} {
		if !slices.Contains(targets, want) {
			t.Errorf("RELEASE_TARGETS lacks %s", want)
		}
	}
	test := regexp.MustCompile(`(?m)^test:([^#\n]*)`).FindSubmatch(data)
	if test == nil || !slices.Contains(strings.Fields(string(test[1])), "cross") {
		t.Errorf("make test does not depend on cross: got %q", test)
	}
}

// TestCrossCatchesUnixOnlyCall shows what make cross is for: a Unix-only call
// on the student's path (here syscall.Stat_t in package roles, slipped in
// through an overlay) fails it for Windows.
func TestCrossCatchesUnixOnlyCall(t *testing.T) {
	if testing.Short() {
		t.Skip("vets every package of the binary for Windows")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "unixonly.go")
	if err := os.WriteFile(src, []byte("package roles\n\nimport (\n\t\"os\"\n\t\"syscall\"\n)\n\nfunc unixOnly(fi os.FileInfo) uint32 { return fi.Sys().(*syscall.Stat_t).Uid }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	roles, err := filepath.Abs("../roles/unixonly.go")
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlay, []byte(`{"Replace":{"`+roles+`":"`+src+`"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "-C", "..", "cross", "RELEASE_TARGETS=windows/amd64")
	cmd.Env = append(os.Environ(), "GOFLAGS=-overlay="+overlay)
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("undefined: syscall.Stat_t")) {
		t.Errorf("make cross with a Unix-only call in roles: got %v, want a failure naming syscall.Stat_t\n%s", err, out)
	}
}
