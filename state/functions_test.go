package state

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/spec"
)

func TestFunctionsCRUD(t *testing.T) {
	db, fc := openTest(t)

	if _, _, err := db.Function("echo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Function on empty db: err = %v, want ErrNotFound", err)
	}
	echo := spec.Function{
		Name: "echo", Run: spec.Run{Command: "cat"}, Env: map[string]string{"A": "1"},
		Concurrency: 10, Memory: 128 << 20, Timeout: spec.Duration(30 * time.Second),
	}
	v1, err := db.PutFunction(echo)
	if err != nil {
		t.Fatal(err)
	}
	got, v, err := db.Function("echo")
	if err != nil || v != v1 || !reflect.DeepEqual(got, echo) {
		t.Fatalf("Function = %+v, %d, %v; want %+v, %d", got, v, err, echo, v1)
	}

	fc.Advance(time.Minute)
	echo.Concurrency = 20
	v2, err := db.PutFunction(echo)
	if err != nil {
		t.Fatal(err)
	}
	if v2 <= v1 {
		t.Fatalf("version after replace = %d, want > %d", v2, v1)
	}
	if got, v, _ := db.Function("echo"); got.Concurrency != 20 || v != v2 {
		t.Fatalf("after replace: concurrency %d version %d, want 20, %d", got.Concurrency, v, v2)
	}

	if _, err := db.PutFunction(spec.Function{Name: "alpha", Run: spec.Run{Go: "./alpha"}}); err != nil {
		t.Fatal(err)
	}
	list, err := db.Functions()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Function.Name != "alpha" || list[1].Function.Name != "echo" {
		t.Fatalf("Functions = %+v, want alpha, echo", list)
	}
	if list[1].Version != v2 || !list[1].Updated.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("echo stored as version %d updated %v, want %d at %v", list[1].Version, list[1].Updated, v2, epoch.Add(time.Minute))
	}

	if err := db.DeleteFunction("echo"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteFunction("echo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: err = %v, want ErrNotFound", err)
	}
	if _, _, err := db.Function("echo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Function after delete: err = %v, want ErrNotFound", err)
	}
	// Deploying again never reuses a version.
	v3, err := db.PutFunction(echo)
	if err != nil {
		t.Fatal(err)
	}
	if v3 <= v2 {
		t.Fatalf("version after delete and put = %d, want > %d", v3, v2)
	}
	if _, err := db.PutFunction(spec.Function{}); err == nil {
		t.Fatal("PutFunction without a name succeeded")
	}
}

func TestFunctionVersionIncrementsPerPut(t *testing.T) {
	db, _ := openTest(t)
	var last int64
	for i := 0; i < 5; i++ {
		v, err := db.PutFunction(spec.Function{Name: "f"})
		if err != nil {
			t.Fatal(err)
		}
		if v != last+1 {
			t.Fatalf("put %d: version %d, want %d", i, v, last+1)
		}
		last = v
	}
}

func TestFunctionsSurviveReopen(t *testing.T) {
	db, fc := openTest(t)
	path := db.bolt.Path()
	v, err := db.PutFunction(spec.Function{Name: "keep", Run: spec.Run{Command: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(path, fc)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	f, v2, err := db2.Function("keep")
	if err != nil || v2 != v || f.Run.Command != "true" {
		t.Fatalf("after reopen: %+v, %d, %v", f, v2, err)
	}
}

func TestClosed(t *testing.T) {
	db, _ := openTest(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if _, err := db.PutFunction(spec.Function{Name: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("PutFunction: %v, want ErrClosed", err)
	}
	if _, _, err := db.Function("x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Function: %v, want ErrClosed", err)
	}
	if _, err := db.Enqueue("x", nil, 1, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue: %v, want ErrClosed", err)
	}
	if _, err := db.Claim(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Claim: %v, want ErrClosed", err)
	}
	if _, err := db.Counts(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counts: %v, want ErrClosed", err)
	}
}
