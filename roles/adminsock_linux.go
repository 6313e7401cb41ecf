package roles

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// The operator socket's two guards, on Linux (PROTOCOL.md §7): the socket file
// is created with mode 0600, never wider even for an instant, and each
// connecting process's uid is read from the kernel (SO_PEERCRED).

// umaskMu serializes the creation of private sockets in this process.
var umaskMu sync.Mutex

// listenPrivate creates the Unix socket at path with mode 0600 from the
// start: it binds under a umask of 0177, then restores the umask. A bind
// followed by a chmod would leave the socket open to every user of the
// machine, under a permissive umask, until the chmod — long enough for
// another user's process to connect.
//
// The umask belongs to the whole process: a file another goroutine created
// during the bind would get no more than mode 0600, and a directory would be
// unusable. The daemons open the operator socket at start, from the one
// goroutine that starts them, with their TCP listener and before any
// goroutine of theirs that creates files runs (runDaemon's loops, the
// connections' handlers), so no other file is being created then; the mutex
// keeps two such sockets (a test's) from restoring each other's umask.
func listenPrivate(path string) (net.Listener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

// peerUID returns the uid of the process at the other end of the Unix
// socket connection c, as the kernel recorded it when it connected.
func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a Unix socket connection (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		cred *syscall.Ucred
		serr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	if cred == nil {
		return 0, errors.New("SO_PEERCRED: no credentials")
	}
	return cred.Uid, nil
}
