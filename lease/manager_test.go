package lease

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const gib = 1 << 30

func newManager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Config{Capacity: Resources{MilliCores: 4000, Memory: 8 * gib, Executors: 4}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func okRequest() Request {
	return Request{Function: "echo", Executors: 1, MilliCores: 1000, Memory: gib, Duration: time.Minute}
}

func TestGrantValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Request)
		want   []string // substrings of the error; none means valid
	}{
		{"ok", func(*Request) {}, nil},
		{"fractional cores", func(r *Request) { r.MilliCores = 1 }, nil},
		{"max duration", func(r *Request) { r.Duration = DefaultMaxDuration }, nil},
		{"hot", func(r *Request) { r.Mode = Hot }, nil},
		{"auto with hot-poll", func(r *Request) { r.HotPoll = time.Second }, nil},
		{"empty function", func(r *Request) { r.Function = "" }, []string{"function name is empty; give the name"}},
		{"zero executors", func(r *Request) { r.Executors = 0 }, []string{"0 executors: ask for at least 1"}},
		{"negative executors", func(r *Request) { r.Executors = -2 }, []string{"-2 executors"}},
		{"zero cores", func(r *Request) { r.MilliCores = 0 }, []string{"0m cores per executor: give at least 1m"}},
		{"zero memory", func(r *Request) { r.Memory = 0 }, []string{"0 bytes of memory per executor: give more than 0"}},
		{"zero duration", func(r *Request) { r.Duration = 0 }, []string{"duration 0s: give how long"}},
		{"negative duration", func(r *Request) { r.Duration = -time.Second }, []string{"duration -1s"}},
		{"duration above max", func(r *Request) { r.Duration = DefaultMaxDuration + 1 }, []string{"above the maximum 10m0s: ask for at most 10m0s and renew"}},
		{"unknown mode", func(r *Request) { r.Mode = 9 }, []string{"mode 9 is unknown; give hot, warm or auto"}},
		{"hot on half a core", func(r *Request) { r.Mode, r.MilliCores = Hot, 500 }, []string{"0.5 cores per executor is too little: give at least 1000m"}},
		{"negative hot-poll", func(r *Request) { r.HotPoll = -1 }, []string{"hot-poll -1ns must not be negative"}},
		{"hot-poll for warm", func(r *Request) { r.Mode, r.HotPoll = Warm, time.Millisecond }, []string{"applies to mode auto only"}},
		{"hot-poll for hot", func(r *Request) { r.Mode, r.HotPoll = Hot, time.Millisecond }, []string{"applies to mode auto only"}},
		{"all at once", func(r *Request) { *r = Request{Mode: 7} }, []string{"function name", "0 executors", "0m cores", "0 bytes", "duration 0s", "mode 7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := okRequest()
			tt.mutate(&r)
			_, err := newManager(t).Grant(start, r)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Grant() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Grant() = %v, want an error wrapping ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Grant() = %q, want it to mention %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("Grant() gave %d errors, want %d:\n%v", n, len(tt.want), err)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"ok", Config{Capacity: Resources{1, 1, 1}}, nil},
		{"no capacity", Config{}, []string{"0m cores", "0 bytes", "0 executors"}},
		{"negative durations", Config{Capacity: Resources{1, 1, 1}, MaxDuration: -1, PeerStaleness: -1, DrainGrace: -1},
			[]string{"max duration", "peer staleness", "drain grace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("New() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("New() = %v, want an error wrapping ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

// TestSentinels checks that each failure matches exactly the sentinels it
// documents, so that callers can branch on errors.Is.
func TestSentinels(t *testing.T) {
	all := map[string]error{
		"ErrInvalid": ErrInvalid, "ErrNoCapacity": ErrNoCapacity, "ErrUnsatisfiable": ErrUnsatisfiable,
		"ErrUnknownLease": ErrUnknownLease, "ErrExpired": ErrExpired,
	}
	peer := func(free, total Resources) []PeerCapacity {
		return []PeerCapacity{{Node: "n2", Addr: "10.0.0.2:7100", Capacity: Capacity{Free: free, Total: total}, AsOf: start}}
	}
	big := Resources{MilliCores: 16000, Memory: 32 * gib, Executors: 16}
	tests := []struct {
		name     string
		do       func(m *Manager) error
		want     []string
		redirect bool
	}{
		{"invalid request", func(m *Manager) error {
			_, err := m.Grant(start, Request{})
			return err
		}, []string{"ErrInvalid"}, false},
		{"redirect", func(m *Manager) error {
			m.SetPeers(start, peer(big, big))
			r := okRequest()
			r.Executors = 8
			_, err := m.Grant(start, r)
			return err
		}, []string{"ErrNoCapacity"}, true},
		{"cluster busy", func(m *Manager) error {
			m.SetPeers(start, peer(Resources{}, big))
			r := okRequest()
			r.Executors = 8
			_, err := m.Grant(start, r)
			return err
		}, []string{"ErrNoCapacity", "ErrUnsatisfiable"}, false},
		{"too big for any node", func(m *Manager) error {
			m.SetPeers(start, peer(big, big))
			r := okRequest()
			r.Executors = 17
			_, err := m.Grant(start, r)
			return err
		}, []string{"ErrUnsatisfiable"}, false},
		{"top-up without room", func(m *Manager) error {
			r := okRequest()
			r.Executors = 4
			l, _ := m.Grant(start, r)
			_ = m.ExecutorLost(start, l.ID, 0, "crash")
			_, _ = m.Grant(start, okRequest())
			_, err := m.TopUp(start, l.ID, 1)
			return err
		}, []string{"ErrNoCapacity"}, false},
		{"unknown lease", func(m *Manager) error {
			_, err := m.Renew(start, "nope", time.Second)
			return err
		}, []string{"ErrUnknownLease"}, false},
		{"expired", func(m *Manager) error {
			l, _ := m.Grant(start, okRequest())
			_, err := m.Renew(start.Add(time.Minute), l.ID, time.Second)
			return err
		}, []string{"ErrExpired"}, false},
		{"released", func(m *Manager) error {
			l, _ := m.Grant(start, okRequest())
			_, _ = m.Release(start, l.ID)
			_, err := m.TopUp(start, l.ID, 1)
			return err
		}, []string{"ErrExpired"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(newManager(t))
			if err == nil {
				t.Fatal("got nil error")
			}
			for name, sentinel := range all {
				want := slices.Contains(tt.want, name)
				if got := errors.Is(err, sentinel); got != want {
					t.Errorf("errors.Is(%q, %s) = %t, want %t", err, name, got, want)
				}
			}
			var r *Redirect
			if got := errors.As(err, &r); got != tt.redirect {
				t.Errorf("errors.As(%q, *Redirect) = %t, want %t", err, got, tt.redirect)
			} else if got && (r.Node != "n2" || r.Addr != "10.0.0.2:7100") {
				t.Errorf("redirect to %s at %s, want n2 at 10.0.0.2:7100", r.Node, r.Addr)
			}
		})
	}
}

// TestCapacityConserved grants, loses, tops up and reclaims at random and
// checks after every step that free capacity is the total less what the
// live executors hold, and never negative.
func TestCapacityConserved(t *testing.T) {
	m := newManager(t)
	now := start
	seed := uint64(1)
	rnd := func(n int) int { // xorshift: deterministic, no math/rand state
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(n))
	}
	for step := range 2000 {
		now = now.Add(time.Duration(rnd(5000)) * time.Millisecond)
		ls := m.Leases(now)
		switch rnd(5) {
		case 0:
			r := okRequest()
			r.Executors, r.MilliCores, r.Memory = 1+rnd(3), int64(250*(1+rnd(6))), int64(1+rnd(3))*gib/2
			r.Duration = time.Duration(1+rnd(30)) * time.Second
			_, _ = m.Grant(now, r)
		case 1:
			if len(ls) > 0 {
				l := ls[rnd(len(ls))]
				_ = m.ExecutorLost(now, l.ID, rnd(len(l.Executors)), "chaos")
			}
		case 2:
			if len(ls) > 0 {
				_, _ = m.TopUp(now, ls[rnd(len(ls))].ID, 1)
			}
		case 3:
			for _, r := range m.Tick(now) {
				if rnd(2) == 0 {
					_, _ = m.Reclaimed(now, r.ID)
				}
			}
		case 4:
			if len(ls) > 0 {
				l := ls[rnd(len(ls))]
				_, _ = m.Release(now, l.ID)
				_, _ = m.Reclaimed(now, l.ID)
			}
		}
		held := Resources{}
		for _, l := range m.Leases(now) {
			live := 0
			for _, e := range l.Executors {
				if e.State != Lost {
					live++
				}
			}
			if live > l.Size {
				t.Fatalf("step %d: lease %s has %d live executors, more than its size %d", step, l.ID, live, l.Size)
			}
			held.Executors += live
			held.MilliCores += int64(live) * l.MilliCores
			held.Memory += int64(live) * l.Memory
		}
		c := m.Capacity()
		want := Resources{c.Total.MilliCores - held.MilliCores, c.Total.Memory - held.Memory, c.Total.Executors - held.Executors}
		if c.Free != want || c.Free.MilliCores < 0 || c.Free.Memory < 0 || c.Free.Executors < 0 {
			t.Fatalf("step %d: free %+v, want %+v (never negative)", step, c.Free, want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{Auto, Hot, Warm} {
		if got, err := ParseMode(m.String()); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseMode("cold"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseMode(cold) = %v, want ErrInvalid", err)
	}
}

func TestDuplicateID(t *testing.T) {
	m, err := New(Config{Capacity: Resources{4000, 8 * gib, 4}, IDs: func() string { return "same" }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Grant(start, okRequest()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Grant(start, okRequest()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Grant with a repeated id = %v, want an error", err)
	}
	if got := m.Capacity().Free.Executors; got != 3 {
		t.Errorf("free executors = %d after a refused grant, want 3", got)
	}
}
