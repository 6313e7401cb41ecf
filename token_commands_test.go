package main

import (
	"errors"
	"strings"
	"testing"
)

// TestSIDGivenTwice: a repeated --sid is an error, not the last one silently.
func TestSIDGivenTwice(t *testing.T) {
	path := writeConfig(t, "")
	for _, cmd := range []string{"token", "tokens", "revoke", "certs"} {
		t.Run(cmd, func(t *testing.T) {
			err := newApp().Run([]string{"pkiboard", "--config", path, cmd, "--sid", "1155000001", "--sid", "1155000002"})
			if err == nil || !strings.Contains(err.Error(), "given twice") {
				t.Errorf("got %v, want --sid given twice refused", err)
			}
		})
	}
}

func TestTokenUsage(t *testing.T) {
	path := writeConfig(t, "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing", nil, "give one of"},
		{"sid and roster", []string{"--sid", "1155000001", "--roster"}, "give one of"},
		{"board and roster", []string{"--board", "--roster"}, "give one of"},
		{"renew without roster", []string{"--sid", "1155000001", "--renew"}, "go with --roster"},
		{"out without roster", []string{"--sid", "1155000001", "--out", "x.csv"}, "go with --roster"},
		{"cancel without sid", []string{"--board", "--cancel"}, "--cancel takes --sid"},
		{"cancel with ttl", []string{"--sid", "1155000001", "--cancel", "--ttl", "1h"}, "--cancel takes --sid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newApp().Run(append([]string{"pkiboard", "--config", path, "token"}, tt.args...))
			var uerr usageError
			if !errors.As(err, &uerr) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a usage error with %q", err, tt.want)
			}
		})
	}
}
