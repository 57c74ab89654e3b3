package node

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/handoff-dev/handoff/s3api"
	"github.com/handoff-dev/handoff/store/local"
)

// The node's share of the ephemeral store: objects in the agent's memory
// (spilling to its disk), served to instances over an S3-compatible API
// on the node. Instances find it in their environment:
//
//	HANDOFF_S3_ENDPOINT, AWS_ENDPOINT_URL_S3   http://host:port of this node's S3 API
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY    the credential it takes
//	AWS_REGION                                  us-east-1
//
// Until the store spreads over nodes, each node serves its own objects.

// S3AccessKey is the access key id of the node's S3 API.
const S3AccessKey = "handoff"

// S3Secret derives the S3 API's secret from the cluster token, so that
// every member (and the CLI, which holds the token's file) shares it
// without a second secret to distribute.
func S3Secret(clusterToken string) string {
	m := hmac.New(sha256.New, []byte(clusterToken))
	m.Write([]byte("handoff s3 secret v1"))
	return hex.EncodeToString(m.Sum(nil))[:40]
}

// setupStore opens the node's store and its S3 listener.
func (a *Agent) setupStore() error {
	budget := a.cfg.StoreMemory
	if budget <= 0 {
		budget = memTotal() / 8
	}
	spill := filepath.Join(a.cfg.Dir, "store-spill")
	if err := os.MkdirAll(spill, 0o700); err != nil {
		return fmt.Errorf("node %s: store spill directory: %w", a.cfg.ID, err)
	}
	// The store's metadata is the node's own until it moves to the control
	// plane: start empty, as the blocks it would point at are gone.
	dir := filepath.Join(a.cfg.Dir, "store")
	os.RemoveAll(dir)
	st, err := local.Open(local.Config{Dir: dir, Memory: budget, SpillDir: spill})
	if err != nil {
		return fmt.Errorf("node %s: store: %w", a.cfg.ID, err)
	}
	h, err := s3api.New(s3api.Config{Backend: st, AccessKey: S3AccessKey, SecretKey: S3Secret(a.cfg.Token), Log: a.log})
	if err != nil {
		st.Close()
		return err
	}
	a.store, a.s3 = st, h
	return nil
}

// serveS3 serves the S3 API until the listener closes.
func (a *Agent) serveS3() (stop func()) {
	srv := &http.Server{Handler: a.s3, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(a.s3Ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			a.log.Error("S3 API stopped", "err", err)
		}
	}()
	return func() { srv.Close(); a.store.Close() }
}

// storeEnv is what an instance needs to reach the store.
func (a *Agent) storeEnv() []string {
	if a.s3Ln == nil {
		return nil
	}
	url := "http://" + a.s3Ln.Addr().String()
	return []string{
		"HANDOFF_S3_ENDPOINT=" + url, "AWS_ENDPOINT_URL_S3=" + url,
		"AWS_ACCESS_KEY_ID=" + S3AccessKey, "AWS_SECRET_ACCESS_KEY=" + S3Secret(a.cfg.Token), "AWS_REGION=us-east-1",
	}
}
