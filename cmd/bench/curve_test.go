package main

import (
	"crypto/x509/pkix"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"pkiboard/board"
	"pkiboard/ca"
	"pkiboard/internal/keys"
)

// TestPopulateBoard copies the one real submission of a board.db (a session
// of the student role, testdata/board-one-submission.db) students × versions
// times: the board's store opens the result, migrated to its schema, and
// lists every copy with its own id and the versions of its student.
func TestPopulateBoard(t *testing.T) {
	for _, tc := range []struct{ students, versions int }{{1, 1}, {3, 2}, {10, 5}} {
		dir := t.TempDir()
		fixture, err := os.ReadFile("testdata/board-one-submission.db")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, board.DBFile)
		if err := os.WriteFile(path, fixture, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := board.Open(dir) // brings the fixture to the current schema
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		if n := populateBoard(path, tc.students, tc.versions); n != tc.students*tc.versions {
			t.Fatalf("%d×%d: populateBoard made %d, want %d", tc.students, tc.versions, n, tc.students*tc.versions)
		}
		st, err = board.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := st.List()
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != tc.students*tc.versions+1 {
			t.Fatalf("%d×%d: the store lists %d submissions, want %d", tc.students, tc.versions, len(recs), tc.students*tc.versions+1)
		}
		ids := map[string]bool{}
		versions := map[string]uint32{}
		for _, r := range recs {
			if ids[r.ID] {
				t.Errorf("id %s twice", r.ID)
			}
			ids[r.ID] = true
			versions[r.SID] = max(versions[r.SID], r.Version)
		}
		if got := versions["c00000"]; got != uint32(tc.versions) {
			t.Errorf("%d×%d: c00000's latest version is %d, want %d", tc.students, tc.versions, got, tc.versions)
		}
	}
}

// TestPopulateCA inserts synthetic certificates into a new CA's ca.db: the
// CA opens it again (its start-up checks pass) and its records list them.
func TestPopulateCA(t *testing.T) {
	dir := t.TempDir()
	opts := ca.Options{Dir: dir, Create: true, Subject: pkix.Name{CommonName: "bench root"},
		SIDPattern: regexp.MustCompile(`[a-z0-9-]+`), BoardName: "blackboard", Policy: ca.PolicyToken}
	a, err := ca.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	root, err := keys.ReadCertificate(filepath.Join(dir, ca.RootFile))
	if err != nil {
		t.Fatal(err)
	}
	const n = 120
	populateCA(filepath.Join(dir, ca.DBFile), root.Raw, n)
	opts.Create = false
	a, err = ca.Open(opts)
	if err != nil {
		t.Fatalf("the CA does not open its populated store: %v", err)
	}
	a.Close()
	recs, err := ca.OpenRecords(dir, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer recs.Close()
	certs, err := recs.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{}
	for _, c := range certs {
		serials[c.Serial.String()] = true
	}
	if len(certs) != n || len(serials) != n {
		t.Errorf("the CA lists %d certificates with %d serials, want %d", len(certs), len(serials), n)
	}
}

// TestSessionsChart draws the sessions curve: a PNG that decodes, with the
// lines in their colours.
func TestSessionsChart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions-curve.png")
	err := writeSessionsChart(path, []curvePoint{{64, 900, 60, 120}, {256, 950, 250, 400}, {1024, 970, 1000, 1500}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 400 {
		t.Errorf("chart is %v, want at least 400×400", b)
	}
	found := map[[3]uint8]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			found[[3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}] = true
		}
	}
	for _, c := range [][3]uint8{{0x1f, 0x77, 0xb4}, {0x2c, 0xa0, 0x2c}, {0xd6, 0x27, 0x28}} {
		if !found[c] {
			t.Errorf("no pixel of the line colour %x", c)
		}
	}
}
