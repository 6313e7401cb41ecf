//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sqlstore

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestNotOwner puts files of the database in the hands of another user, or
// makes them unwritable: Open refuses, naming the file and the command that
// fixes it.
func TestNotOwner(t *testing.T) {
	const stranger = 65534 // nobody
	tests := []struct {
		name   string
		file   string // suffix of the database's path
		chown  bool   // give it to another user (needs root)
		mode   os.FileMode
		wanted string
	}{
		{name: "-wal of another user", file: "-wal", chown: true, mode: 0o644, wanted: "chown "},
		{name: "-shm of another user", file: "-shm", chown: true, mode: 0o644, wanted: "chown "},
		{name: "database of another user", file: "", chown: true, mode: 0o644, wanted: "chown "},
		{name: "lock file of another user", file: ".lock", chown: true, mode: 0o644, wanted: "chown "},
		{name: "-wal not writable", file: "-wal", mode: 0o400, wanted: "chmod u+w "},
		{name: "-shm not writable", file: "-shm", mode: 0o444, wanted: "chmod u+w "},
		{name: "database not writable", file: "", mode: 0o400, wanted: "chmod u+w "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.chown && os.Geteuid() != 0 {
				t.Skip("giving a file to another user needs root (CI runs the tests as root)")
			}
			path := tempPath(t)
			newDatabase(t, path, 1, testMigrations)
			name := path + tt.file
			if tt.file == "-wal" || tt.file == "-shm" {
				// What a read by another user leaves behind.
				if err := os.WriteFile(name, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.chown {
				if err := os.Chown(name, stranger, stranger); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(name, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, Options{Migrations: testMigrations})
			if !errors.Is(err, ErrNotOwner) {
				t.Fatalf("got %v want ErrNotOwner", err)
			}
			fix := tt.wanted + name
			if tt.chown {
				fix = tt.wanted + ownerSpec(os.Geteuid(), os.Getegid()) + " " + name
			}
			if !strings.Contains(err.Error(), fix) {
				t.Errorf("%q does not say %q", err, fix)
			}
			// A read-only open does not write, and does not mind.
			ro, err := Open(path, Options{Migrations: testMigrations, ReadOnly: true})
			if err == nil {
				ro.Close()
			} else if !tt.chown && tt.file != "-shm" && tt.file != "-wal" {
				t.Errorf("read-only open: %v", err)
			}
		})
	}
}
