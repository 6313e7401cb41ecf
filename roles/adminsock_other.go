//go:build !linux

package roles

import (
	"errors"
	"net"
)

// errLinuxOnly explains why the operator socket does not start here.
var errLinuxOnly = errors.New("the operator socket checks each peer's uid with SO_PEERCRED, which pkiboard uses on Linux only; the CA and the board run on Linux for now")

// listenPrivate refuses: without a check of its peers' uid, the operator
// socket is not opened (see adminsock_linux.go).
func listenPrivate(string) (net.Listener, error) { return nil, errLinuxOnly }

// peerUID refuses, as listenPrivate does.
func peerUID(net.Conn) (uint32, error) { return 0, errLinuxOnly }
