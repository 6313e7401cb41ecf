package roles

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"pkiboard/internal/durable"
	"pkiboard/internal/keys"
)

// crlSeenFile is the file in student.data_dir where the student keeps the
// highest CRL number it has seen in a board status, per root (PROTOCOL.md
// §5.1, STEP 5).
const crlSeenFile = "status.json"

// crlSeenJSON is that file's content: the version, and the highest CRL number
// by the root's fingerprint (lowercase hex).
type crlSeenJSON struct {
	Version int               `json:"version"`
	Highest map[string]uint64 `json:"highest_crl_number"`
}

// crlSeen remembers the highest CRL number seen in a board status under each
// root, so that a board that staples an older status than one already seen is
// refused stale-status. The concurrent IDs of one process share it under its
// mutex; another process that writes the file at the same time loses nothing
// either, since each write takes the larger of its number and the file's.
type crlSeen struct {
	path string
	mu   sync.Mutex
}

// rootKey is a root's key in the file: its fingerprint, lowercase hex.
func rootKey(root *x509.Certificate) string {
	fp := keys.Fingerprint(root)
	return hex.EncodeToString(fp[:])
}

func newCRLSeen(dataDir string) *crlSeen {
	return &crlSeen{path: filepath.Join(dataDir, crlSeenFile)}
}

// read reads the file; a missing file holds nothing.
func (c *crlSeen) read() (map[string]uint64, error) {
	data, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, err
	}
	var f crlSeenJSON
	if err := json.Unmarshal(data, &f); err != nil || f.Version != 1 {
		return nil, fmt.Errorf("%s is not a file of CRL numbers seen (%v); move it away to start afresh (the board's status is then trusted from its CRL number on)", c.path, err)
	}
	if f.Highest == nil {
		f.Highest = map[string]uint64{}
	}
	return f.Highest, nil
}

// highest returns the highest CRL number seen under root, 0 if none.
func (c *crlSeen) highest(root *x509.Certificate) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.read()
	if err != nil {
		return 0, err
	}
	return m[rootKey(root)], nil
}

// saw records that a status of CRL number n was seen under root, durably,
// unless the file already holds n or more.
func (c *crlSeen) saw(root *x509.Certificate, n uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.read()
	if err != nil {
		return err
	}
	fp := rootKey(root)
	if m[fp] >= n {
		return nil
	}
	m[fp] = n
	data, err := json.MarshalIndent(crlSeenJSON{Version: 1, Highest: m}, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(c.path, append(data, '\n'), 0o600)
}
