package control

import (
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/handoff-dev/handoff/store/meta"
	"github.com/handoff-dev/handoff/store/metarpc"
)

// The store's metadata service: buckets, objects and their block lists,
// multipart uploads and expiries, in store.db beside state.db, served to
// node agents at POST /v1/store/meta/{op} behind the cluster token
// (package store/metarpc). Writes are synced: this is the cluster's only
// copy, and it outlives every node agent.

// openStoreMeta opens the store's metadata database in the state
// directory.
func openStoreMeta(cfg Config) (*meta.DB, error) {
	db, err := meta.Open(filepath.Join(cfg.Dir, "store.db"), meta.Options{Clock: cfg.Clock})
	if err != nil {
		return nil, fmt.Errorf("control: store metadata: %w", err)
	}
	return db, nil
}

// storeMetaHandler serves the metadata ops to node agents.
func (s *Server) storeMetaHandler() http.HandlerFunc {
	h := &metarpc.Handler{DB: s.meta, Members: s.storeMembers}
	return s.nodeOnly(h.ServeHTTP)
}

// storeMembers lists the node agents that hold store blocks now: each live
// agent's holder name (its id and boot) and peer address. Holders that
// drained into another agent are left out: their store blocks went with
// them.
func (s *Server) storeMembers() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]string, len(s.nodes))
	for _, n := range s.nodes {
		if n.up && n.last.Holder != "" && n.last.PeerAddr != "" {
			m[n.last.Holder] = n.last.PeerAddr
		}
	}
	return m
}
