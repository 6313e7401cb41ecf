package sqlstore

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperEnv names the database the crash helper writes to.
const helperEnv = "SQLSTORE_CRASH_HELPER_DB"

// crashHelper is the child process of TestAcknowledgedWritesSurviveKill:
// eight writers insert items as fast as they can and print "ack KEY" for
// each Update that returned, until the process is killed (or a minute has
// passed, if the test died first).
func crashHelper(path string) int {
	db, err := Open(path, Options{Migrations: testMigrations})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := range 8 {
		go func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("p%d-w%d-%06d", os.Getpid(), w, i)
				if err := db.Update(put(k)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s\n", k)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Minute)
	return 3
}

// TestAcknowledgedWritesSurviveKill kills a process that writes with eight
// goroutines (SIGKILL, in the middle of its commits), three times over the
// same file: every write whose Update had returned is in the database when
// it is opened again. (A power loss is what synchronous=FULL is for; a test
// cannot cut the power, so this shows the crash half: nothing acknowledged
// is lost and the file opens after every kill.) Each kill leaves the WAL
// behind, so each open runs the full check.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	path := tempPath(t)
	var acked []string
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			k, ok := strings.CutPrefix(sc.Text(), "ack ")
			if !ok {
				t.Fatalf("round %d: helper printed %q", round, sc.Text())
			}
			acked = append(acked, k)
			if n++; n == 300 {
				cmd.Process.Kill()
			}
		}
		err = cmd.Wait()
		if n < 300 {
			t.Fatalf("round %d: the helper ended after %d writes: %v", round, n, err)
		}
		if _, err := os.Stat(path + "-wal"); err != nil {
			t.Fatalf("round %d: the kill left no WAL file: %v", round, err)
		}
		db, err := Open(path, Options{Migrations: testMigrations})
		if err != nil {
			t.Fatalf("round %d: open after the kill: %v", round, err)
		}
		if c := db.Checked(); !c.Full || !strings.Contains(c.Reason, "not clean") {
			t.Errorf("round %d: the open after the kill checked %+v, want the full check for an unclean stop", round, c)
		}
		have := map[string]bool{}
		for _, k := range keys(t, db) {
			have[k] = true
		}
		db.Close()
		missing := 0
		for _, k := range acked {
			if !have[k] {
				missing++
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged writes are missing after the kill", round, missing, len(acked))
		}
		t.Logf("round %d: %d writes acknowledged before and while the kill, all there; %d items in the file", round, n, len(have))
	}
}
