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

	"github.com/handoff-dev/handoff/internal/httpx"
	"github.com/handoff-dev/handoff/peerlink"
	"github.com/handoff-dev/handoff/s3api"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/store/blocks"
	"github.com/handoff-dev/handoff/store/local"
	"github.com/handoff-dev/handoff/store/metarpc"
	"github.com/handoff-dev/handoff/store/spread"
	"github.com/handoff-dev/handoff/storefs"
)

// The cluster's ephemeral store, served to instances over an
// S3-compatible API on every node: metadata in the control plane (package
// store/metarpc), blocks in the node agents' memory, spilling to their
// disks, written to the writing node first and, for objects with
// replicas, to other live nodes too (package store/spread); a block held
// elsewhere is pulled over the peer link. An object put through one node
// is read through any other. The node caches the metadata it has seen,
// and the control plane tells every node of each change before it
// reports the change done. Instances find the API in their environment:
//
//	HANDOFF_S3_ENDPOINT, AWS_ENDPOINT_URL_S3   http://host:port of this node's S3 API
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY    the function's own credential
//	AWS_REGION                                  us-east-1
//
// An instance's credential is its function's (s3api.FunctionKey): it
// reaches only the buckets the function's spec grants (store.read,
// store.readWrite), and nothing without a store section. Its secret is
// derived from the cluster token, so every node accepts it. The admin
// credential (S3AccessKey, S3Secret) may do everything; it is for the
// CLI, tests and the benchmark harness, and never handed to instances.
//
// Without a cluster identity (Config.TLS) the node neither serves nor
// pulls blocks: it reads only the blocks it wrote itself.

// S3AccessKey is the access key id of the admin credential of the node's
// S3 API.
const S3AccessKey = "handoff"

// S3Secret derives the S3 API's secret from the cluster token, so that
// every member (and the CLI, which holds the token's file) shares it
// without a second secret to distribute.
func S3Secret(clusterToken string) string {
	m := hmac.New(sha256.New, []byte(clusterToken))
	m.Write([]byte("handoff s3 secret v1"))
	return hex.EncodeToString(m.Sum(nil))[:40]
}

// FunctionKeyRoot derives from the cluster token the root secret of
// functions' S3 credentials (s3api.Config.FunctionKeys), the same on
// every member.
func FunctionKeyRoot(clusterToken string) []byte {
	m := hmac.New(sha256.New, []byte(clusterToken))
	m.Write([]byte("handoff s3 function keys v1"))
	return m.Sum(nil)
}

// FunctionS3Key returns the S3 credential a node hands to the instances
// of function name with store grants g.
func FunctionS3Key(clusterToken, name string, g spec.Store) (accessKey, secret string) {
	return s3api.FunctionKey(FunctionKeyRoot(clusterToken), name, g)
}

// setupStore opens the node's view of the cluster store and its S3 API.
func (a *Agent) setupStore() error {
	budget := a.cfg.StoreMemory
	if budget <= 0 {
		budget = memTotal() / 8
	}
	spill := filepath.Join(a.cfg.Dir, "store-spill")
	if err := os.MkdirAll(spill, 0o700); err != nil {
		return fmt.Errorf("node %s: store spill directory: %w", a.cfg.ID, err)
	}
	// Metadata kept per node by earlier versions; the control plane has it
	// now.
	os.RemoveAll(filepath.Join(a.cfg.Dir, "store"))
	bs, err := blocks.New(blocks.Config{Memory: budget, SpillDir: spill, MaxBlock: blocks.DefaultSize})
	if err != nil {
		return fmt.Errorf("node %s: store: %w", a.cfg.ID, err)
	}
	rpc := &metarpc.Client{BaseURL: a.cfg.ControlURL + "/v1/store/meta", Header: http.Header{}}
	httpx.SetToken(rpc.Header, a.cfg.Token)
	// Metadata the node has seen is served from its cache, kept correct
	// by the control plane's invalidations (metarpc.Cache): a fresh
	// instance's first read of a known object costs no round trip to
	// the control plane.
	// Its invalidations also reach the kernel's caches of the node's
	// mounts (storeViews.changed), which then keep names and attributes
	// for as long as the cache is kept correct.
	a.views = &storeViews{m: map[string]*storefs.Server{}}
	md := metarpc.NewCache(rpc, metarpc.CacheOptions{Log: a.log, OnChange: a.views.changed})
	a.views.pushed = md.Serving
	tc := spread.Config{Self: a.holder, Local: bs, Members: md.Members, Logger: a.log}
	if a.member != nil {
		tc.Link = &peerlink.Client{TLS: a.member.ClientConfig(""), Clear: !a.cfg.PeerEncrypt}
	}
	a.tier = spread.New(tc)
	st, err := local.Open(local.Config{Meta: md, Blocks: a.tier})
	if err != nil {
		a.tier.Close()
		return fmt.Errorf("node %s: store: %w", a.cfg.ID, err)
	}
	h, err := s3api.New(s3api.Config{Backend: st, AccessKey: S3AccessKey, SecretKey: S3Secret(a.cfg.Token),
		FunctionKeys: FunctionKeyRoot(a.cfg.Token), Log: a.log})
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

// storeEnv is what an instance of fn needs to reach the store: its
// function's credential, never the admin's.
func (a *Agent) storeEnv(fn spec.Function) []string {
	if a.s3Ln == nil {
		return nil
	}
	url := "http://" + a.s3Ln.Addr().String()
	ak, sk := FunctionS3Key(a.cfg.Token, fn.Name, fn.Store)
	return []string{
		"HANDOFF_S3_ENDPOINT=" + url, "AWS_ENDPOINT_URL_S3=" + url,
		"AWS_ACCESS_KEY_ID=" + ak, "AWS_SECRET_ACCESS_KEY=" + sk, "AWS_REGION=us-east-1",
	}
}
