package ca

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// roster is the list of SIDs allowed to enroll, read from a file and read
// again whenever the file's modification time or size changes.
type roster struct {
	path  string
	sidRE *regexp.Regexp
	log   *zap.Logger

	mu      sync.Mutex
	modTime time.Time
	size    int64
	sids    map[string]struct{}
}

func loadRoster(path string, sidRE *regexp.Regexp, log *zap.Logger) (*roster, error) {
	r := &roster{path: path, sidRE: sidRE, log: log}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ca: roster: %w", err)
	}
	if err := r.reload(fi); err != nil {
		return nil, err
	}
	log.Info("roster loaded", zap.String("file", path), zap.Int("sids", len(r.sids)))
	return r, nil
}

// contains reports whether sid is on the roster, reading the file again
// first if it changed. If the changed file cannot be read or has a bad line,
// the last good list stays in force and a warning is logged.
func (r *roster) contains(sid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	switch {
	case err != nil:
		r.log.Warn("cannot read the roster; the last version read stays in force",
			zap.String("file", r.path), zap.Error(err))
	case !fi.ModTime().Equal(r.modTime) || fi.Size() != r.size:
		if err := r.reload(fi); err != nil {
			r.log.Warn("the changed roster was not taken; the last version read stays in force", zap.Error(err))
			// Do not try again until the file changes once more.
			r.modTime, r.size = fi.ModTime(), fi.Size()
		} else {
			r.log.Info("roster reloaded", zap.String("file", r.path), zap.Int("sids", len(r.sids)))
		}
	}
	_, ok := r.sids[sid]
	return ok
}

// reload reads the file, whose stat is fi. r.mu is held (or r is new).
func (r *roster) reload(fi os.FileInfo) error {
	data, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("ca: roster: %w", err)
	}
	sids, err := parseRoster(data, r.sidRE)
	if err != nil {
		return fmt.Errorf("ca: roster %s: %w", r.path, err)
	}
	r.sids, r.modTime, r.size = sids, fi.ModTime(), fi.Size()
	return nil
}

// parseRoster reads one SID per line; '#' starts a comment that runs to the
// end of the line; blank lines and surrounding spaces are ignored. Every SID
// must match sidRE.
func parseRoster(data []byte, sidRE *regexp.Regexp) (map[string]struct{}, error) {
	sids := map[string]struct{}{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		sid := strings.TrimSpace(line)
		if sid == "" {
			continue
		}
		if !sidRE.MatchString(sid) {
			return nil, fmt.Errorf("line %d: %q does not match the SID pattern", n, sid)
		}
		sids[sid] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return sids, nil
}
