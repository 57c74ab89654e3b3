package wc

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
)

// Counts maps a word to the number of times it occurs. Its encoding is a JSON
// object {"word": count, ...} with the keys sorted.
type Counts map[string]int64

// isSpace says which bytes separate words: ASCII whitespace. Every other
// byte belongs to a word.
var isSpace = [256]bool{' ': true, '\n': true, '\t': true, '\r': true, '\v': true, '\f': true}

// Counter counts words. Its zero value is ready to use.
//
// It is an open-addressing hash table specialized for the job: the hash
// (FNV-1a) is computed in the same pass that finds the word's end, a word
// already seen costs one probe and one comparison without allocating, and
// the table of a few thousand words stays in the CPU cache. That is about
// twice as fast as a map[string]int64 here.
type Counter struct {
	slots []slot // power-of-two length; at most half full
	shift uint   // 64 - log2(len(slots))
	used  int
	total int64
}

type slot struct {
	hash  uint64
	word  string // "" for an empty slot (words are never empty)
	count int64
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Add counts the words in b. A word never spans two calls: b must end at a
// word boundary (the generator's chunks do).
func (c *Counter) Add(b []byte) {
	if c.slots == nil {
		c.resize(1 << 13)
	}
	var total int64
	i, n := 0, len(b)
	for {
		for i < n && isSpace[b[i]] {
			i++
		}
		if i == n {
			break
		}
		start := i
		h := uint64(fnvOffset)
		for i < n {
			ch := b[i]
			if isSpace[ch] {
				break
			}
			h = (h ^ uint64(ch)) * fnvPrime
			i++
		}
		total++
		w := b[start:i]
		slots, shift := c.slots, c.shift
		mask := len(slots) - 1
		for j := int((h * 0x9e3779b97f4a7c15) >> shift); ; j = (j + 1) & mask {
			s := &slots[j]
			if s.hash == h && s.word == string(w) { // no allocation
				s.count++
				break
			}
			if s.word == "" {
				*s = slot{hash: h, word: string(w), count: 1}
				c.used++
				if 2*c.used > len(slots) {
					c.resize(2 * len(slots))
				}
				break
			}
		}
	}
	c.total += total
}

// resize rehashes into a table of n slots.
func (c *Counter) resize(n int) {
	old := c.slots
	c.slots = make([]slot, n)
	c.shift = uint(64 - bits.TrailingZeros(uint(n)))
	mask := n - 1
	for _, s := range old {
		if s.word == "" {
			continue
		}
		j := int((s.hash * 0x9e3779b97f4a7c15) >> c.shift)
		for c.slots[j].word != "" {
			j = (j + 1) & mask
		}
		c.slots[j] = s
	}
}

// Words returns the number of words counted.
func (c *Counter) Words() int64 { return c.total }

// Counts returns the counts as a map.
func (c *Counter) Counts() Counts {
	m := make(Counts, c.used)
	for _, s := range c.slots {
		if s.word != "" {
			m[s.word] = s.count
		}
	}
	return m
}

// Count returns the counts of the words in b.
func Count(b []byte) Counts {
	var c Counter
	c.Add(b)
	return c.Counts()
}

// Encode returns the JSON encoding of c: an object with sorted keys.
func (c Counts) Encode() []byte {
	b, err := json.Marshal(map[string]int64(c))
	if err != nil {
		panic(err) // a map[string]int64 always encodes
	}
	return b
}

// DecodeCounts parses the encoding made by Counts.Encode.
func DecodeCounts(b []byte) (Counts, error) {
	var c Counts
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("wc: decoding counts: %w", err)
	}
	if c == nil {
		return nil, fmt.Errorf("wc: decoding counts: got %.20q, want a JSON object", b)
	}
	return c, nil
}

// Merge adds the counts of o to c.
func (c Counts) Merge(o Counts) {
	for w, n := range o {
		c[w] += n
	}
}

// Total returns the number of words counted in c.
func (c Counts) Total() int64 {
	var t int64
	for _, n := range c {
		t += n
	}
	return t
}

// WordCount is one entry of a top list.
type WordCount struct {
	Word  string `json:"word"`
	Count int64  `json:"count"`
}

// Summary is the result of wc-merge.
type Summary struct {
	// Words is the total number of words.
	Words int64 `json:"words"`
	// Distinct is the number of different words.
	Distinct int `json:"distinct"`
	// Top are the n most frequent words, most frequent first (ties by word).
	Top []WordCount `json:"top"`
}

// Summarize returns the total, the number of distinct words and the n most
// frequent words of c.
func Summarize(c Counts, n int) Summary {
	all := make([]WordCount, 0, len(c))
	s := Summary{Distinct: len(c)}
	for w, k := range c {
		s.Words += k
		all = append(all, WordCount{w, k})
	}
	slices.SortFunc(all, func(a, b WordCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Compare(a.Word, b.Word)
	})
	s.Top = all[:min(n, len(all))]
	return s
}
