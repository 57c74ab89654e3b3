package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/handoff-dev/handoff/internal/handofftest"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/cgroup"
	"github.com/handoff-dev/handoff/sdk"
)

// testCgroupParent holds the groups of this test process's instances.
var testCgroupParent = fmt.Sprintf("handoff-test/sup-%d", os.Getpid())

// The test binary doubles as the instance program: with HELPER_MODE set,
// TestMain runs helperMain instead of the tests. Modes:
//
//	echo   serve HTTP on $PORT (see helperMux); with CRASH_AFTER=n exit 3
//	       after answering n requests; with FAIL_IF_EXISTS=path exit 1 at
//	       once when path exists, else create it
//	fail   print an error and exit 1 immediately
//	slow   sleep SLOW_MS before serving like echo
//	sleep  sleep forever (a child process for the process group test)
//	agent  act as a node agent: start an echo instance, print its pid,
//	       block (the Pdeathsig test kills this process)
func TestMain(m *testing.M) {
	if mode := os.Getenv("HELPER_MODE"); mode != "" {
		helperMain(mode)
		return
	}
	code := m.Run()
	cgroup.RemoveParent(testCgroupParent)
	os.Exit(code)
}

func helperMain(mode string) {
	switch mode {
	case "fail":
		fmt.Println("helper: loading config")
		fmt.Fprintln(os.Stderr, "helper: cannot open config.yaml: no such file or directory")
		os.Exit(1)
	case "sleep":
		time.Sleep(time.Hour)
		os.Exit(0)
	case "announce", "mumble":
		// Says it is ready (or something else) on the ready pipe and
		// never listens.
		fd, _ := strconv.Atoi(os.Getenv("HANDOFF_READY_FD"))
		msg := "ready\n"
		if mode == "mumble" {
			msg = "hello\n"
		}
		os.NewFile(uintptr(fd), "ready").WriteString(msg)
		time.Sleep(time.Hour)
		os.Exit(0)
	case "agent":
		inst, err := Start(context.Background(), Config{
			ID: "agent-child", Function: "f", Node: "n",
			Command: os.Args[0], Env: []string{"HELPER_MODE=echo"},
		})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(inst.Info().PID)
		time.Sleep(time.Hour)
		os.Exit(0)
	case "sdk":
		// The real SDK around the helper's handlers (parks when asked).
		if err := sdk.ServeContext(context.Background(), helperMux()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "slow":
		ms, _ := strconv.Atoi(os.Getenv("SLOW_MS"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case "echo":
	default:
		fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
		os.Exit(2)
	}
	if p := os.Getenv("FAIL_IF_EXISTS"); p != "" {
		if _, err := os.Stat(p); err == nil {
			fmt.Fprintln(os.Stderr, "helper: refusing to start again")
			os.Exit(1)
		}
		os.WriteFile(p, nil, 0o644)
	}
	crashAfter, _ := strconv.ParseInt(os.Getenv("CRASH_AFTER"), 10, 64)
	var served atomic.Int64
	mux := helperMux()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if crashAfter == 0 || n < crashAfter {
			mux.ServeHTTP(w, r)
			return
		}
		// Answer completely (with a length, flushed) before crashing.
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		w.Header().Set("Content-Length", strconv.Itoa(rec.Body.Len()))
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		w.(http.Flusher).Flush()
		{
			fmt.Fprintln(os.Stderr, "helper: crashing on purpose after", n, "requests")
			os.Exit(3)
		}
	})
	fmt.Println("helper: listening on", os.Getenv("PORT"))
	err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), h)
	fmt.Fprintln(os.Stderr, "helper:", err)
	os.Exit(1)
}

func helperMux() *http.ServeMux {
	mux := http.NewServeMux()
	// POST / echoes the body, as the instance contract's invocation.
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(os.Environ())
	})
	mux.HandleFunc("GET /cgroup", func(w http.ResponseWriter, r *http.Request) {
		b, _ := os.ReadFile("/proc/self/cgroup")
		w.Write(b)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		io.WriteString(w, "slow done")
	})
	// GET /alloc?mb=n touches n MiB and keeps them.
	var keep [][]byte
	mux.HandleFunc("GET /alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		for i := 0; i < mb; i++ {
			c := make([]byte, 1<<20)
			for j := 0; j < len(c); j += 4096 {
				c[j] = 1
			}
			keep = append(keep, c)
		}
		fmt.Fprintf(w, "allocated %d MiB", len(keep))
	})
	// GET /child starts a child process in the same process group and
	// returns its pid.
	mux.HandleFunc("GET /child", func(w http.ResponseWriter, r *http.Request) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "HELPER_MODE=sleep")
		if err := cmd.Start(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		go cmd.Wait()
		fmt.Fprint(w, cmd.Process.Pid)
	})
	return mux
}

// checkFor polls fn every poll until it returns nil or total passes.
var checkFor = handofftest.CheckFor
