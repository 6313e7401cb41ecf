package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pkiboard/internal/keys"
	"pkiboard/internal/testcert"
)

// testRoot makes a self-signed root named cn.
func testRoot(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	k := testcert.Key(t)
	return testcert.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, k.Public(), k)
}

// saveRoot writes root as PEM into dir/name and returns the path.
func saveRoot(t testing.TB, dir, name string, root *x509.Certificate) string {
	t.Helper()
	return writeFile(t, dir, name, keys.EncodeCertificatePEM(root.Raw))
}

func fingerprint(c *x509.Certificate) []byte {
	sum := keys.Fingerprint(c)
	return sum[:]
}

// TestAnchorCheck is the rule of trust for a root the CA sends: the
// fingerprint, else the configured or saved root, else first use.
func TestAnchorCheck(t *testing.T) {
	root, other := testRoot(t, "Root"), testRoot(t, "Other")
	dir := t.TempDir()
	savedRoot := saveRoot(t, dir, "saved-root.pem", root)
	savedOther := saveRoot(t, dir, "saved-other.pem", other)
	garbage := writeFile(t, dir, "garbage.pem", []byte("not PEM"))
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name     string
		anchor   *Anchor
		firstUse bool
		wantErr  string // "" for trusted
	}{
		{"fingerprint matches", &Anchor{Fingerprint: fingerprint(root)}, false, ""},
		{"fingerprint matches, another root saved", &Anchor{Fingerprint: fingerprint(root), Saved: savedOther}, false, ""},
		{"fingerprint differs", &Anchor{Fingerprint: fingerprint(other)}, false, "not the configured one; refusing it"},
		{"fingerprint differs, setting named", &Anchor{Fingerprint: fingerprint(other), Setting: "board.root_fingerprint"}, false, "not board.root_fingerprint; refusing it"},
		{"same root saved", &Anchor{Saved: savedRoot}, false, ""},
		{"another root saved", &Anchor{Saved: savedOther}, false, "is not the one saved in " + savedOther},
		{"saved root unreadable", &Anchor{Saved: garbage}, false, garbage},
		{"nothing saved yet: first use", &Anchor{Saved: missing}, true, ""},
		{"nowhere to save: first use", &Anchor{}, true, ""},
		{"configured file is the root", &Anchor{File: savedRoot, Saved: savedOther}, false, ""},
		{"configured file is another root", &Anchor{File: savedOther}, false, "is not the one in " + savedOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			firstUse, err := tt.anchor.Check(root)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v, want the root trusted", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if firstUse != tt.firstUse {
				t.Errorf("first use: got %v want %v", firstUse, tt.firstUse)
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("Check saved a root: %v", err)
	}
}

// TestAnchorLoad reads the configured root, else the saved one, checked
// against the fingerprint, without asking the CA.
func TestAnchorLoad(t *testing.T) {
	root, other := testRoot(t, "Root"), testRoot(t, "Other")
	dir := t.TempDir()
	savedRoot := saveRoot(t, dir, "saved-root.pem", root)
	savedOther := saveRoot(t, dir, "saved-other.pem", other)
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name    string
		anchor  *Anchor
		want    *x509.Certificate // nil: none
		wantErr string
	}{
		{"file first", &Anchor{File: savedRoot, Saved: savedOther}, root, ""},
		{"saved", &Anchor{Saved: savedRoot}, root, ""},
		{"saved, fingerprint matches", &Anchor{Saved: savedRoot, Fingerprint: fingerprint(root)}, root, ""},
		{"saved, fingerprint differs", &Anchor{Saved: savedOther, Fingerprint: fingerprint(root), Setting: "board.root_fingerprint"}, nil, savedOther + " has fingerprint " + keys.FingerprintHex(other) + ", not board.root_fingerprint"},
		{"file, fingerprint differs", &Anchor{File: savedOther, Fingerprint: fingerprint(root)}, nil, "not the configured one"},
		{"file missing", &Anchor{File: missing, Saved: savedRoot}, nil, "no such file"},
		{"nothing saved", &Anchor{Saved: missing}, nil, ""},
		{"nothing at all", &Anchor{}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.anchor.Load()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if (got == nil) != (tt.want == nil) || got != nil && !got.Equal(tt.want) {
				t.Errorf("got root %v want %v", got, tt.want)
			}
		})
	}
}

// TestAnchorResolve settles a root the way the board does: from the CA,
// checked and saved, on the first start; from the saved file afterwards.
func TestAnchorResolve(t *testing.T) {
	s := newServerCA(t, nil)
	other := testRoot(t, "Other")
	tests := []struct {
		name     string
		anchor   func(dir string) *Anchor
		firstUse bool
		wantErr  string
	}{
		{"no fingerprint: first use", func(dir string) *Anchor { return &Anchor{Saved: filepath.Join(dir, RootFile)} }, true, ""},
		{"fingerprint matches", func(dir string) *Anchor {
			return &Anchor{Fingerprint: fingerprint(s.Root()), Saved: filepath.Join(dir, RootFile)}
		}, false, ""},
		{"fingerprint differs", func(dir string) *Anchor {
			return &Anchor{Fingerprint: fingerprint(other), Saved: filepath.Join(dir, RootFile), Setting: "board.root_fingerprint"}
		}, false, "not board.root_fingerprint; refusing it"},
		{"configured file: the CA is not asked", func(dir string) *Anchor {
			return &Anchor{File: saveRoot(t, dir, "configured.pem", other), Saved: filepath.Join(dir, RootFile)}
		}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a := tt.anchor(dir)
			root, firstUse, err := a.Resolve(t.Context(), s.client)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(a.Saved); !os.IsNotExist(err) {
					t.Errorf("a refused root was saved: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if firstUse != tt.firstUse {
				t.Errorf("first use: got %v want %v", firstUse, tt.firstUse)
			}
			if a.File != "" {
				if !root.Equal(other) {
					t.Error("the configured root was not the one returned")
				}
				return
			}
			if !root.Equal(s.Root()) {
				t.Error("got another root than the CA's")
			}
			// The next start loads the saved root, with no CA to ask.
			again, firstUse, err := a.Resolve(t.Context(), Client{Addr: "127.0.0.1:1"})
			if err != nil || firstUse || !again.Equal(root) {
				t.Errorf("second Resolve: got %v, first use %v, %v; want the saved root", again, firstUse, err)
			}
		})
	}
}
