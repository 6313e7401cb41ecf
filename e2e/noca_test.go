package e2e

import (
	"os"
	"strings"
	"testing"
)

// TestOperatorCommandsNeedACA is the regression test of finding 9: `certs`
// or `token` against a config whose CA directory was empty made a new root
// and printed a token for it. Now each CA operator command refuses a
// directory with no CA, names it, says how to make one, and creates nothing.
func TestOperatorCommandsNeedACA(t *testing.T) {
	commands := [][]string{
		{"certs"},
		{"token", "--sid", "alice"},
		{"token", "--board"},
		{"revoke", "--serial", "01", "--reason", "keyCompromise"},
		{"crl"},
	}
	for _, empty := range []bool{false, true} {
		in := newInstall(t, nil)
		dir := in.path("data", "ca")
		if empty {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, args := range commands {
			r := in.run(nil, args...)
			if r.code == 0 || !strings.Contains(r.stderr, dir) || !strings.Contains(r.stderr, "pkiboard --role=ca") {
				t.Errorf("%s with no CA in %s (empty directory %v): exit %d, stderr:\n%s", strings.Join(args, " "), dir, empty, r.code, r.stderr)
			}
			entries, err := os.ReadDir(dir)
			switch {
			case empty && err != nil:
				t.Fatal(err)
			case !empty && !os.IsNotExist(err):
				t.Errorf("%s created %s", strings.Join(args, " "), dir)
			case len(entries) > 0:
				t.Errorf("%s left %d files in %s", strings.Join(args, " "), len(entries), dir)
			}
		}
	}
}
