package autoscale

import "time"

// bucket holds the samples recorded during one BucketWidth slot of time.
type bucket struct {
	slot int64   // which slot (time / BucketWidth) the sums belong to
	sum  float64 // sum of the samples recorded in slot
	n    int     // number of samples; 0 means the bucket is empty
}

// history is a fixed ring of buckets covering the stable window. Its size
// never changes after construction, so memory stays bounded however often
// or irregularly samples arrive: a bucket is reused as soon as its slot
// leaves the window.
type history struct {
	buckets []bucket
	newest  int64 // highest slot ever written; meaningful once written is true
	written bool
}

func newHistory(span time.Duration) *history {
	return &history{buckets: make([]bucket, bucketsFor(span))}
}

// bucketsFor is the number of buckets a window of span covers, rounded up.
func bucketsFor(span time.Duration) int {
	return int((span + BucketWidth - 1) / BucketWidth)
}

// slotOf maps a time to its slot, flooring so that times before the Unix
// epoch still land in the right slot.
func slotOf(t time.Time) int64 {
	ns := t.UnixNano()
	s := ns / int64(BucketWidth)
	if ns%int64(BucketWidth) < 0 {
		s--
	}
	return s
}

func (h *history) index(slot int64) int {
	n := int64(len(h.buckets))
	return int(((slot % n) + n) % n)
}

// add records v at time t. A sample older than the whole ring (relative to
// the newest sample seen) is dropped: it could only overwrite newer data.
func (h *history) add(t time.Time, v float64) {
	s := slotOf(t)
	if h.written && s <= h.newest-int64(len(h.buckets)) {
		return
	}
	b := &h.buckets[h.index(s)]
	switch {
	case b.n == 0 || b.slot < s:
		*b = bucket{slot: s, sum: v, n: 1}
	case b.slot == s:
		b.sum += v
		b.n++
	default:
		// The bucket already holds a newer slot; s is too old to keep.
		return
	}
	if !h.written || s > h.newest {
		h.newest, h.written = s, true
	}
}

// average returns the mean over the last k slots ending at now's slot, and
// how many of those slots held samples. Each observed slot counts once (its
// own samples averaged first), so a flurry of samples within one second
// does not outweigh the seconds around it. Slots without samples are left
// out rather than counted as zero: the autoscaler does not invent load, or
// idleness, it never saw.
func (h *history) average(now time.Time, k int) (avg float64, observed int) {
	k = min(k, len(h.buckets))
	end := slotOf(now)
	var sum float64
	for s := end; s > end-int64(k); s-- {
		b := h.buckets[h.index(s)]
		if b.n > 0 && b.slot == s {
			sum += b.sum / float64(b.n)
			observed++
		}
	}
	if observed == 0 {
		return 0, 0
	}
	return sum / float64(observed), observed
}
