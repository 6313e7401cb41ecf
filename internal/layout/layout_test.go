package layout

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the path of our module: a package is ours if its path is module
// or begins with module + "/".
const module = "pkiboard"

const (
	mainPkg  = module
	rolesPkg = module + "/roles"
	// consolePkg is the staff console's pages: only roles imports it.
	consolePkg = module + "/console"
)

// pkg is one of our packages as go list describes it.
type pkg struct {
	path        string
	imports     []string // of the package itself
	testImports []string // of its tests, internal and external
}

func ours(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }

// under reports whether path is the package p or one below it.
func under(path, p string) bool { return path == p || strings.HasPrefix(path, p+"/") }

// check returns every breach of the import rules in pkgs, keyed by import
// path, as sentences naming the offending import (and, for an indirect one,
// the chain of imports that brings it in).
func check(pkgs map[string]*pkg) []string {
	var bad []string
	for _, path := range sortedKeys(pkgs) {
		p := pkgs[path]
		// wire and rc4 import nothing of ours.
		if under(path, module+"/wire") || under(path, module+"/rc4") {
			for _, imp := range p.imports {
				if ours(imp) {
					bad = append(bad, fmt.Sprintf("%s imports %s: wire and rc4 import no package of ours", path, imp))
				}
			}
		}
		// ca and board never import roles, directly or not, nor do their tests.
		if under(path, module+"/ca") || under(path, module+"/board") {
			if chain := pathTo(pkgs, p.imports, rolesPkg); chain != nil {
				bad = append(bad, fmt.Sprintf("%s imports %s: ca and board never import roles", path, strings.Join(chain, " -> ")))
			}
			if chain := pathTo(pkgs, p.testImports, rolesPkg); chain != nil {
				bad = append(bad, fmt.Sprintf("the tests of %s import %s: ca and board never import roles", path, strings.Join(chain, " -> ")))
			}
		}
		// Only main imports roles.
		if path != mainPkg && path != rolesPkg && slices.Contains(p.imports, rolesPkg) {
			bad = append(bad, fmt.Sprintf("%s imports %s: only the main package %s imports roles", path, rolesPkg, mainPkg))
		}
		// Nothing imports console but roles, which registers its pages on
		// each daemon's web.Server; no test outside console and roles does.
		if path != rolesPkg && path != consolePkg && slices.Contains(p.imports, consolePkg) {
			bad = append(bad, fmt.Sprintf("%s imports %s: only roles imports the console", path, consolePkg))
		}
		if path != rolesPkg && path != consolePkg && slices.Contains(p.testImports, consolePkg) {
			bad = append(bad, fmt.Sprintf("the tests of %s import %s: only roles imports the console", path, consolePkg))
		}
		// No test outside roles and main imports roles.
		if path != mainPkg && path != rolesPkg && slices.Contains(p.testImports, rolesPkg) {
			bad = append(bad, fmt.Sprintf("the tests of %s import %s: no test outside roles and main imports roles (read the binary's documented output, or the package that owns the data)", path, rolesPkg))
		}
	}
	return bad
}

// pathTo returns a chain of imports, starting with one of from, that leads to
// target through our packages, or nil if none does.
func pathTo(pkgs map[string]*pkg, from []string, target string) []string {
	prev := map[string]string{}
	var queue []string
	for _, imp := range from {
		if ours(imp) {
			if _, seen := prev[imp]; !seen {
				prev[imp] = ""
				queue = append(queue, imp)
			}
		}
	}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == target {
			var chain []string
			for p := cur; p != ""; p = prev[p] {
				chain = append([]string{p}, chain...)
			}
			return chain
		}
		if p, ok := pkgs[cur]; ok {
			for _, imp := range p.imports {
				if _, seen := prev[imp]; !seen && ours(imp) {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// goList describes every package of the module with the real go command.
func goList(t *testing.T) map[string]*pkg {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the import rules are checked with the go command: %v", err)
	}
	cmd := exec.Command(goCmd, "list", "-f",
		`{{.ImportPath}}	{{join .Imports " "}}	{{join .TestImports " "}} {{join .XTestImports " "}}`, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]*pkg{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(fields) != 3 {
			t.Fatalf("go list printed %q", line)
		}
		pkgs[fields[0]] = &pkg{path: fields[0], imports: strings.Fields(fields[1]), testImports: strings.Fields(fields[2])}
	}
	return pkgs
}

// TestImportRules checks the import rules of DESIGN.md §2 on the module as it
// is.
func TestImportRules(t *testing.T) {
	pkgs := goList(t)
	for _, want := range []string{mainPkg, rolesPkg, module + "/wire", module + "/rc4", module + "/ca", module + "/board", module + "/e2e"} {
		if _, ok := pkgs[want]; !ok {
			t.Fatalf("go list did not list %s: the rules would be checked on nothing", want)
		}
	}
	for _, breach := range check(pkgs) {
		t.Error(breach)
	}
}

// TestCheckFindsBreaches checks that check reports each kind of breach, naming
// the offending import.
func TestCheckFindsBreaches(t *testing.T) {
	graph := func(edges ...string) map[string]*pkg {
		pkgs := map[string]*pkg{}
		get := func(path string) *pkg {
			if pkgs[path] == nil {
				pkgs[path] = &pkg{path: path}
			}
			return pkgs[path]
		}
		for _, e := range edges {
			from, to, _ := strings.Cut(e, " ")
			if f, ok := strings.CutPrefix(from, "test:"); ok {
				get(module + "/" + f).testImports = append(get(module+"/"+f).testImports, module+"/"+to)
				continue
			}
			get(module + "/" + from).imports = append(get(module+"/"+from).imports, module+"/"+to)
			get(module + "/" + to)
		}
		return pkgs
	}
	tests := []struct {
		name  string
		pkgs  map[string]*pkg
		wants []string // parts of the breaches reported, one each; none for a clean graph
	}{
		{"clean", graph("roles board", "roles session", "board session", "session wire"), nil},
		{"wire imports ours", graph("wire internal/keys"), []string{"pkiboard/wire imports pkiboard/internal/keys"}},
		{"rc4 imports ours", graph("rc4 wire"), []string{"pkiboard/rc4 imports pkiboard/wire"}},
		{"board imports roles through another", graph("board session", "session roles"),
			[]string{"pkiboard/board imports pkiboard/session -> pkiboard/roles", "pkiboard/session imports pkiboard/roles: only the main package"}},
		{"ca's tests import roles", graph("test:ca roles"),
			[]string{"import pkiboard/roles: ca and board never import roles", "import pkiboard/roles: no test outside roles and main"}},
		{"cmd imports roles", graph("cmd/bench roles"), []string{"pkiboard/cmd/bench imports pkiboard/roles"}},
		{"a test imports roles", graph("test:internal/proc roles"), []string{"the tests of pkiboard/internal/proc import pkiboard/roles"}},
		{"roles imports the console", graph("roles console", "console board", "console internal/web"), nil},
		{"board imports the console", graph("board console"), []string{"pkiboard/board imports pkiboard/console: only roles"}},
		{"e2e's tests import the console", graph("test:e2e console"), []string{"the tests of pkiboard/e2e import pkiboard/console"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(tt.pkgs)
			if len(got) != len(tt.wants) {
				t.Fatalf("got %d breaches %q, want %d", len(got), got, len(tt.wants))
			}
			for _, want := range tt.wants {
				if !slices.ContainsFunc(got, func(b string) bool { return strings.Contains(b, want) }) {
					t.Errorf("no breach says %q; got %q", want, got)
				}
			}
		})
	}
}
