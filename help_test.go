package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/help from the current help")

// TestHelpGolden compares `pkiboard --help` and `pkiboard COMMAND --help`,
// for every command the app has, with testdata/help/<command>.txt
// (pkiboard.txt for the main command). A new command without a golden file
// fails, and so does a golden file left behind by a command that is gone.
// go test -run TestHelpGolden -update rewrites them; read the diff.
func TestHelpGolden(t *testing.T) {
	dir := filepath.Join("testdata", "help")
	want := map[string]bool{"pkiboard.txt": true}
	names := []string{""}
	for _, cmd := range newApp().Commands {
		names = append(names, cmd.Name)
		want[cmd.Name+".txt"] = true
	}
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		file := name + ".txt"
		if name == "" {
			file = "pkiboard.txt"
		}
		t.Run(strings.TrimSuffix(file, ".txt"), func(t *testing.T) {
			got := helpText(t, name)
			path := filepath.Join(dir, file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v: a command's help needs a golden file; make it with go test -run TestHelpGolden -update", err)
			}
			if !bytes.Equal(got, golden) {
				t.Errorf("help of %q differs from %s (go test -run TestHelpGolden -update, then read the diff):\n%s", name, path, lineDiff(golden, got))
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !want[e.Name()] {
			t.Errorf("%s: no command %q; remove the file", filepath.Join(dir, e.Name()), strings.TrimSuffix(e.Name(), ".txt"))
		}
	}
}

// TestHelpFitsTheCommand checks what the golden files alone would not: that
// each operator command's help has a description, and offers none of the
// role flags it does not take.
func TestHelpFitsTheCommand(t *testing.T) {
	for _, cmd := range newApp().Commands {
		t.Run(cmd.Name, func(t *testing.T) {
			if strings.TrimSpace(cmd.Description) == "" {
				t.Errorf("no Description")
			}
			help := string(helpText(t, cmd.Name))
			for _, flag := range []string{"--listen", "--log-file"} {
				if strings.Contains(help, flag+" ") {
					t.Errorf("help offers %s, which no operator command takes", flag)
				}
			}
		})
	}
}

// helpText returns `pkiboard [command] --help` as the app prints it.
func helpText(t *testing.T, command string) []byte {
	t.Helper()
	args := []string{"pkiboard", "--help"}
	if command != "" {
		args = []string{"pkiboard", command, "--help"}
	}
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	if err := app.Run(args); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.Bytes()
}

// lineDiff lists the lines of want and got that differ, numbered.
func lineDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n  want: %s\n  got:  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
