package state

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/clock"
)

// The crash and lock tests re-execute the test binary as a child process
// that uses the database; the environment says what it does.
const (
	helperEnv   = "HANDOFF_STATE_TEST_HELPER" // "crash" or "hold"
	helperDBEnv = "HANDOFF_STATE_TEST_DB"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		helperMain(mode, os.Getenv(helperDBEnv))
		return
	}
	os.Exit(m.Run())
}

// helperMain runs in the child. It reports on stdout, one line per fact,
// and only after the fact is committed:
//
//	enq ID      ID was enqueued
//	claim ID    ID was claimed (is running)
//	ready       the first phase is done
//
// then keeps enqueueing and claiming until it is killed.
func helperMain(mode, path string) {
	db, err := Open(path, clock.Real{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	if mode == "hold" {
		say("ready")
		time.Sleep(time.Hour) // until killed; db stays open and locked
		db.Close()
		return
	}
	step := func(i int) {
		inv, err := db.Enqueue("crashy", []byte("input "+strconv.Itoa(i)), 3, "")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		say("enq %s", inv.ID)
		if i%2 == 0 {
			batch, err := db.Claim(1)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			for _, inv := range batch {
				say("claim %s", inv.ID)
			}
		}
	}
	i := 0
	for ; i < 10; i++ {
		step(i)
	}
	say("ready")
	for ; ; i++ {
		step(i)
	}
}

// startHelper starts the child on path and returns it once it said ready,
// with the lines it printed so far and a reader for the rest.
func startHelper(t *testing.T, mode, path string) (*exec.Cmd, []string, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDBEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	var lines []string
	for sc.Scan() {
		if sc.Text() == "ready" {
			return cmd, lines, sc
		}
		lines = append(lines, sc.Text())
	}
	t.Fatalf("helper %s exited before it was ready: %v", mode, sc.Err())
	return nil, nil, nil
}

// TestCrashRecovery kills a process with SIGKILL while it enqueues and
// claims, then reopens the database: every invocation the child was told
// about is there, and the ones it had claimed are queued again with the
// interrupted attempt not counted.
func TestCrashRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	cmd, lines, sc := startHelper(t, "crash", path)

	// Let it run on a little, then kill it mid-stride.
	for i := 0; i < 20 && sc.Scan(); i++ {
		lines = append(lines, sc.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Lines already in the pipe were printed after their commit.
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper exit: %v, want killed", err)
	}

	enqueued, claimed := map[string]bool{}, map[string]bool{}
	for _, l := range lines {
		what, id, _ := strings.Cut(l, " ")
		switch what {
		case "enq":
			enqueued[id] = true
		case "claim":
			claimed[id] = true
		default:
			t.Fatalf("helper said %q", l)
		}
	}
	if len(enqueued) < 10 || len(claimed) < 5 {
		t.Fatalf("helper reported %d enqueued, %d claimed; want at least 10 and 5", len(enqueued), len(claimed))
	}

	db, err := Open(path, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkInvariants(t, db)

	counts, err := db.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if counts[StatusRunning] != 0 {
		t.Fatalf("after reopen %d invocations are running, want 0", counts[StatusRunning])
	}
	// The child may have committed an enqueue it did not get to report.
	if n := counts[StatusQueued]; n < len(enqueued) || n > len(enqueued)+1 {
		t.Fatalf("after reopen %d queued, child reported %d enqueued", n, len(enqueued))
	}
	for id := range enqueued {
		inv, err := db.Invocation(id)
		if err != nil {
			t.Fatalf("enqueued %s lost: %v", id, err)
		}
		if inv.Status != StatusQueued || inv.Attempts != 0 || !strings.HasPrefix(string(inv.Input), "input ") {
			t.Fatalf("%s after reopen (claimed before: %v): %+v", id, claimed[id], inv)
		}
	}

	// Everything is claimable again, each once.
	got := map[string]bool{}
	for {
		batch, err := db.Claim(7)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		for _, inv := range batch {
			if got[inv.ID] || inv.Attempts != 1 {
				t.Fatalf("claim after reopen: %s (seen %v) attempts %d", inv.ID, got[inv.ID], inv.Attempts)
			}
			got[inv.ID] = true
		}
	}
	for id := range enqueued {
		if !got[id] {
			t.Fatalf("%s was not claimable after reopen", id)
		}
	}
	checkInvariants(t, db)
}

// TestOpenInUse checks that a second process gets a clear, fast error
// naming the holder, and that the lock goes with the holder.
func TestOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	cmd, _, _ := startHelper(t, "hold", path)

	start := time.Now()
	db, err := Open(path, clock.Real{})
	if err == nil {
		db.Close()
		t.Fatal("Open succeeded while another process holds the database")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Open took %v to give up, want about a second", took)
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("err = %v, want ErrInUse", err)
	}
	want := fmt.Sprintf("state: %s is in use by another handoff process (pid %d); stop it or use another --dir", path, cmd.Process.Pid)
	if err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}

	cmd.Process.Kill()
	cmd.Wait()
	db, err = Open(path, clock.Real{})
	if err != nil {
		t.Fatalf("Open after the holder died: %v", err)
	}
	db.Close()
}
