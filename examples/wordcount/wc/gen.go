// Package wc is the word-count logic shared by the wordcount example
// functions (wc-gen, wc-count, wc-merge) and the demo driver: a deterministic
// corpus generator, a fast word counter, the counts encoding, the merge, and
// the JSON messages the functions exchange.
//
// # Corpus
//
// Chunk i of a corpus with seed S is len bytes of lowercase ASCII words drawn
// from a fixed vocabulary of VocabSize words with a Zipf-like distribution
// (the word of rank r has probability about 1/(r·H)), separated by a space or,
// for one word in 16, a newline. It never contains '{' or any byte other than
// 'a'–'z', ' ' and '\n', and it never cuts a word: the last bytes of a chunk
// are spaces when the next word does not fit. The same (S, i, len) always
// gives the same bytes, on every machine.
package wc

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// VocabSize is the number of distinct words the generator draws from.
const VocabSize = 4000

// maxWord is the longest word; a word and its separator fit in 16 bytes.
const maxWord = 15

// zipfBits is the log2 of the size of the sampling table.
const zipfBits = 16

var (
	// vocab[r] is the word of rank r followed by a space, padded with spaces
	// to 16 bytes; vocabLen[r] is its length including the one space.
	vocab    [VocabSize][16]byte
	vocabLen [VocabSize]uint8
	// zipf maps 16 random bits to a rank; each rank has at least one entry,
	// so every word of the vocabulary appears in a large enough corpus.
	zipf [1 << zipfBits]uint16
)

func init() {
	buildVocab()
	buildZipf()
}

// rng is wyrand: one add and one 64×64→128 multiply per 64 random bits.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.s, r.s^0xe7037ed1a0b428db)
	return hi ^ lo
}

// buildVocab makes VocabSize distinct pronounceable words from a fixed seed.
// Frequent (low-rank) words are short, as in natural language.
func buildVocab() {
	const (
		consonants = "bcdfghjklmnprstvwz"
		vowels     = "aeiou"
	)
	r := rng{s: 0x68616e646f6666} // "handoff"
	seen := make(map[string]bool, VocabSize)
	for rank := 0; rank < VocabSize; {
		// Length 2–4 for the top 50 words, growing slowly with rank, up to 12.
		lo := 2 + min(6, bits.Len(uint(rank))/2)
		n := lo + int(r.next()%uint64(min(5, maxWord-lo)))
		w := make([]byte, n)
		for i := range w {
			x := r.next()
			if i%2 == 0 {
				w[i] = consonants[x%uint64(len(consonants))]
			} else {
				w[i] = vowels[x%uint64(len(vowels))]
			}
		}
		if seen[string(w)] {
			continue
		}
		seen[string(w)] = true
		slot := &vocab[rank]
		for i := range slot {
			slot[i] = ' '
		}
		copy(slot[:], w)
		vocabLen[rank] = uint8(n + 1)
		rank++
	}
}

// buildZipf fills the sampling table: rank r gets a share of the entries
// proportional to 1/(r+1), and at least one.
func buildZipf() {
	var h float64
	for r := 1; r <= VocabSize; r++ {
		h += 1 / float64(r)
	}
	const size = 1 << zipfBits
	counts := make([]int, VocabSize)
	total := 0
	for r := range counts {
		counts[r] = max(1, int(math.Round(size/(float64(r+1)*h))))
		total += counts[r]
	}
	counts[0] -= total - size // give or take the rounding to the top word
	i := 0
	for r, c := range counts {
		for range c {
			zipf[i] = uint16(r)
			i++
		}
	}
}

// Word returns the vocabulary word of the given rank (0 is the most
// frequent).
func Word(rank int) string {
	return string(vocab[rank][:vocabLen[rank]-1])
}

// chunkRNG seeds the generator of one chunk from the corpus seed and the
// chunk index (splitmix64 finalizer, so nearby seeds give unrelated streams).
func chunkRNG(seed int64, chunk int) rng {
	z := uint64(seed)*0x9e3779b97f4a7c15 + uint64(chunk)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return rng{s: z ^ (z >> 31)}
}

// Generate fills dst with chunk chunk of the corpus with the given seed and
// returns the number of words written. See the package documentation for
// the format.
func Generate(dst []byte, seed int64, chunk int) (words int64) {
	r := chunkRNG(seed, chunk)
	pos, end := 0, len(dst)
	// Fast path: copy whole 16-byte slots with two stores and advance by the
	// word's length; the next word overwrites the padding.
	for end-pos >= 3*16 {
		x := r.next()
		for k := 0; k < 3; k++ {
			rank := zipf[uint16(x>>(16*k))]
			slot := &vocab[rank]
			d := dst[pos : pos+16]
			binary.LittleEndian.PutUint64(d, binary.LittleEndian.Uint64(slot[0:8]))
			binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(slot[8:16]))
			pos += int(vocabLen[rank])
			if (x>>(48+4*k))&15 == 0 {
				dst[pos-1] = '\n'
			}
		}
		words += 3
	}
	// Tail: whole words while they fit, then spaces.
	for {
		x := r.next()
		rank := zipf[uint16(x)]
		n := int(vocabLen[rank])
		if n > end-pos {
			break
		}
		copy(dst[pos:], vocab[rank][:n])
		pos += n
		if (x>>48)&15 == 0 {
			dst[pos-1] = '\n'
		}
		words++
	}
	for ; pos < end; pos++ {
		dst[pos] = ' '
	}
	return words
}

// GenerateChunk returns chunk chunk (n bytes) of the corpus with the given
// seed and the number of words in it.
func GenerateChunk(seed int64, chunk int, n int) ([]byte, int64) {
	b := make([]byte, n)
	return b, Generate(b, seed, chunk)
}
