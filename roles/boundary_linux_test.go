package roles

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"pkiboard/wire"
)

// TestCheckDataDirRefusesUnsafe is finding 7's data directory: an existing
// one open to group or others, or owned by another user, is refused at start
// with the command that fixes it; a missing one is created with mode 0700.
func TestCheckDataDirRefusesUnsafe(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string // in the error; none: accepted
	}{
		{"missing", func(*testing.T, string) {}, nil},
		{"private", func(t *testing.T, dir string) { mkdir(t, dir, 0o700) }, nil},
		{"open to others", func(t *testing.T, dir string) { mkdir(t, dir, 0o755) },
			[]string{"has mode 0755, open to group or others", `run chmod 700 "` + "DIR" + `"`}},
		{"open to the group", func(t *testing.T, dir string) { mkdir(t, dir, 0o770) },
			[]string{"has mode 0770", "chmod 700"}},
		{"searchable by others", func(t *testing.T, dir string) { mkdir(t, dir, 0o701) },
			[]string{"has mode 0701", "chmod 700"}},
		{"a file", func(t *testing.T, dir string) {
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"is not a directory"}},
	}
	if os.Getuid() == 0 {
		tests = append(tests, struct {
			name  string
			setup func(t *testing.T, dir string)
			want  []string
		}{"another owner", func(t *testing.T, dir string) {
			mkdir(t, dir, 0o700)
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, []string{"not to root, the daemon's user", `run chown -R root "DIR"`}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			tt.setup(t, dir)
			err := checkDataDir("board", "board.data_dir", dir)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
					t.Errorf("the data directory: %v, %v; want mode 0700", info.Mode(), err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted an unsafe data directory")
			}
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "DIR", dir); !strings.Contains(err.Error(), w) {
					t.Errorf("%v\ndoes not say %s", err, w)
				}
			}
			if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "board.data_dir") {
				t.Errorf("%v\ndoes not name the directory and its key", err)
			}
		})
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// TestListenPrivateUnderPermissiveUmask is finding 7's race: under umask 000,
// the operator socket must have mode 0600 the moment it exists, not after a
// chmod that another user's process can beat. It fails if the socket is
// bound with the process's umask.
func TestListenPrivateUnderPermissiveUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), adminSocketName)
	ln, err := listenPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("the socket was created with mode %04o, want 0600", perm)
	}
	if now := syscall.Umask(0); now != 0 {
		t.Errorf("listenPrivate left the umask at %04o, want the process's 0000 back", now)
	}
}

// TestAdminRefusesOtherUsers checks the peer check of the operator socket
// with an allow that refuses the test's own uid: the connection is closed
// before anything is read, and the refusals are logged once a second.
func TestAdminRefusesOtherUsers(t *testing.T) {
	dir := t.TempDir()
	ln, err := listenAdmin(dir)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	ran := false
	s := &adminServer{log: zap.New(core), allow: func(uint32) bool { return false },
		ops: map[string]adminOp{"token": func(context.Context, json.RawMessage) (any, error) { ran = true; return "secret", nil }}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	defer func() { cancel(); waitStopped(t, done, "the admin server did not stop") }()
	for range 3 {
		var out string
		err := callAdmin(ctx, dir, "token", nil, &out, nil)
		if err == nil || out != "" {
			t.Fatalf("another user's command: got %q, %v; want no answer", out, err)
		}
	}
	if ran {
		t.Error("the command ran for a refused peer")
	}
	if n := logs.FilterMessageSnippet("refused a process of another user").Len(); n != 1 {
		t.Errorf("3 refusals logged in %d lines, want 1", n)
	}
}

// TestAdminRefusesAnotherUID runs, as root, a process of uid 65534 that
// connects to an operator socket opened wide on purpose (mode 0666 in a
// searchable directory), so that only the uid check stands: it must get no
// answer, while root does. Skipped unless the tests run as root.
func TestAdminRefusesAnotherUID(t *testing.T) {
	if os.Getenv("PKIBOARD_ADMIN_DIAL") != "" {
		return // the child's part is TestHelperAdminDial
	}
	if os.Getuid() != 0 {
		t.Skip("needs root, to run a process of another uid")
	}
	dir := openTempDir(t)
	ln, err := listenAdmin(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o711, filepath.Join(dir, adminSocketName): 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	s := &adminServer{log: zap.NewNop(), ops: map[string]adminOp{"token": func(context.Context, json.RawMessage) (any, error) { return "secret", nil }}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	defer func() { cancel(); waitStopped(t, done, "the admin server did not stop") }()

	// The test binary, where uid 65534 may run it.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	binDir := openTempDir(t)
	child := filepath.Join(binDir, "roles.test")
	if err := os.WriteFile(child, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(child, "-test.run=^TestHelperAdminDial$", "-test.v")
	cmd.Dir = binDir
	cmd.Env = append(os.Environ(), "PKIBOARD_ADMIN_DIAL="+filepath.Join(dir, adminSocketName))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the process of uid 65534: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "DIAL RESULT: no answer") {
		t.Errorf("a process of uid 65534 was answered:\n%s", out)
	}
	var got string
	if err := callAdmin(ctx, dir, "token", nil, &got, nil); err != nil || got != "secret" {
		t.Errorf("root: got %q, %v", got, err)
	}
}

// TestHelperAdminDial is the child of TestAdminRefusesAnotherUID: it asks the
// operator socket named by PKIBOARD_ADMIN_DIAL for a token and prints what
// came back.
func TestHelperAdminDial(t *testing.T) {
	path := os.Getenv("PKIBOARD_ADMIN_DIAL")
	if path == "" {
		t.Skip("run by TestAdminRefusesAnotherUID")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	wc := wire.NewConn(c, wire.Options{MaxFrame: wire.MaxAdminFrame, ReadTimeout: 5 * time.Second})
	wc.WriteMessage(&wire.AdminRequest{Command: "token", Args: []byte("{}")}) //nolint:errcheck // the daemon may have closed
	m, err := wc.ReadMessage()
	if resp, ok := m.(*wire.AdminResponse); err == nil && ok {
		t.Logf("DIAL RESULT: answered %s", resp.Result)
		return
	}
	if err != nil && (errors.Is(err, io.EOF) || wire.PeerGone(err) || errors.Is(err, syscall.ECONNRESET)) {
		t.Logf("DIAL RESULT: no answer (%v)", err)
		return
	}
	t.Logf("DIAL RESULT: %v, %v", m, err)
}

// openTempDir returns a new directory that every user may search (mode
// 0755, in the system's temporary directory), removed when the test ends.
func openTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pkb-uid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
