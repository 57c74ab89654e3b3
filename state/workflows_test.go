package state

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestWorkflowsAndRunsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutWorkflow("wc", []byte("name: wc\n")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutWorkflow("wc", []byte("name: wc\nstages: []\n")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutRun("r1", []byte(`{"state":"failed"}`)); err != nil {
		t.Fatal(err)
	}
	if err := db.PutWorkflow("", nil); err == nil {
		t.Error("a workflow without a name was stored")
	}
	db.Close()

	db, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b, err := db.Workflow("wc")
	if err != nil || string(b) != "name: wc\nstages: []\n" {
		t.Fatalf("workflow after reopen: %q, %v; want the last put", b, err)
	}
	names, err := db.Workflows()
	if err != nil || len(names) != 1 || names[0] != "wc" {
		t.Fatalf("workflows %v, %v", names, err)
	}
	if r, err := db.Run("r1"); err != nil || string(r) != `{"state":"failed"}` {
		t.Fatalf("run after reopen: %q, %v", r, err)
	}
	if _, err := db.Workflow("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing workflow: %v; want ErrNotFound", err)
	}
	if _, err := db.Run("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing run: %v; want ErrNotFound", err)
	}
}
