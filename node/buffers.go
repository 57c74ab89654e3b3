package node

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/buffer"
	"github.com/handoff-dev/handoff/pki"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/xfer"
)

// holderName names one incarnation of an agent in the references it signs:
// a restarted agent is a new holder, so references to buffers that died
// with the old one fail as gone instead of reaching the wrong buffers.
func holderName(id, boot string) string {
	n, _ := strconv.ParseInt(boot, 10, 64)
	return id + "-" + strconv.FormatInt(n, 36)
}

// setupRefs makes the buffer store and the reference-passing service.
func (a *Agent) setupRefs() error {
	a.policy = xfer.Policy{InlineMax: a.cfg.InlineMax, Available: map[xfer.Mode]bool{xfer.Ref: true}}
	keys, err := refKeyring(a.cfg.Token)
	if err != nil {
		return err
	}
	budget := a.cfg.BufferMemory
	if budget <= 0 {
		budget = memTotal() / 4
	}
	spill := a.cfg.SpillDir
	switch spill {
	case "":
		spill = filepath.Join(a.cfg.Dir, "spill")
	case "-":
		spill = ""
	}
	if spill != "" {
		if err := os.MkdirAll(spill, 0o700); err != nil {
			return fmt.Errorf("node %s: spill directory: %w", a.cfg.ID, err)
		}
	}
	store, err := buffer.New(buffer.Config{Memory: budget, SpillDir: spill})
	if err != nil {
		return fmt.Errorf("node %s: buffers: %w", a.cfg.ID, err)
	}
	if a.cfg.TLS.Cert != "" {
		m, err := pki.Load(a.cfg.TLS)
		if err != nil {
			return fmt.Errorf("node %s: cluster identity: %w", a.cfg.ID, err)
		}
		a.member = m
	}
	a.refs, err = refpass.New(refpass.Config{Node: a.holder, Store: store, Keys: keys, Member: a.member, Clear: !a.cfg.PeerEncrypt, Logger: a.log})
	if err != nil {
		return err
	}
	a.metrics.watchRefs(a.refs)
	return nil
}

// sweepBuffers frees expired buffers every second until the returned stop.
func (a *Agent) sweepBuffers() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.refs.Sweep()
			}
		}
	}()
	return cancel
}

// handOffBuffers gives the unread buffers to another member before the
// agent exits, so the references to them keep working.
func (a *Agent) handOffBuffers() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if a.refs.Store().Stats().Buffers > 0 {
		// A fresh directory first: the adopter must be a member that is
		// up now, and an agent that started a moment ago may not know
		// its peers yet.
		client := &http.Client{Transport: a.toCtl, Timeout: 5 * time.Second}
		if err := a.beat(ctx, client); err != nil {
			a.log.Warn("no fresh member directory before handing buffers over", "err", err)
		}
	}
	n, err := a.refs.Handoff(ctx)
	if err != nil {
		a.log.Error("unread buffers could not all be handed over", "moved", n, "err", err)
	}
}

// setPeers takes the control plane's directory of holders.
func (a *Agent) setPeers(d Directory) {
	if d.Peers != nil {
		a.refs.SetPeers(d.Peers)
	}
}

// memTotal is the machine's memory in bytes (1 GiB if unknown).
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					return kb << 10
				}
			}
		}
	}
	return 1 << 30
}
