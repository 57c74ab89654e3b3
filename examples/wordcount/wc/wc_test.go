package wc

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestVocab(t *testing.T) {
	seen := map[string]bool{}
	for r := 0; r < VocabSize; r++ {
		w := Word(r)
		if len(w) < 2 || len(w) > maxWord || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("word %d is %q", r, w)
		}
		if seen[w] {
			t.Fatalf("word %q twice", w)
		}
		seen[w] = true
	}
}

func TestGenerateDeterministicAndWellFormed(t *testing.T) {
	for _, n := range []int{0, 1, 2, 15, 16, 47, 48, 49, 1000, 1 << 20} {
		a, wa := GenerateChunk(7, 3, n)
		b, wb := GenerateChunk(7, 3, n)
		if !bytes.Equal(a, b) || wa != wb {
			t.Fatalf("n=%d: two runs differ", n)
		}
		if len(a) != n {
			t.Fatalf("n=%d: got %d bytes", n, len(a))
		}
		if strings.Trim(string(a), "abcdefghijklmnopqrstuvwxyz \n") != "" {
			t.Fatalf("n=%d: unexpected bytes in %q", n, a[:min(n, 100)])
		}
		c := Count(a)
		if c.Total() != wa {
			t.Fatalf("n=%d: generator says %d words, counter finds %d", n, wa, c.Total())
		}
		for w := range c {
			if !inVocab(w) {
				t.Fatalf("n=%d: word %q is not in the vocabulary (cut word?)", n, w)
			}
		}
	}
	x, _ := GenerateChunk(7, 4, 1000)
	y, _ := GenerateChunk(8, 3, 1000)
	z, _ := GenerateChunk(7, 3, 1000)
	if bytes.Equal(x, z) || bytes.Equal(y, z) {
		t.Error("different chunks or seeds give the same bytes")
	}
}

// TestGenerateGolden pins the corpus: a change of the generator changes what
// every stored run and baseline measured.
func TestGenerateGolden(t *testing.T) {
	b, words := GenerateChunk(1, 0, 64)
	got := fmt.Sprintf("%q %d", b, words)
	const want = `"gameji\nmelisose jisulim vemi kogew bahuwa kogew lebenurab       " 8`
	if got != want {
		t.Errorf("chunk 0 of seed 1 is\n%s\nwant\n%s", got, want)
	}
}

func inVocab(w string) bool {
	for r := 0; r < VocabSize; r++ {
		if Word(r) == w {
			return true
		}
	}
	return false
}

func TestZipfShape(t *testing.T) {
	b, words := GenerateChunk(42, 0, 64<<20)
	s := Summarize(Count(b), TopN)
	if s.Words != words {
		t.Fatalf("total %d, want %d", s.Words, words)
	}
	if s.Distinct != VocabSize {
		t.Errorf("distinct %d in 64 MiB, want all %d", s.Distinct, VocabSize)
	}
	// Zipf with exponent 1: rank 1 about half as frequent as rank 0, and
	// rank 0 about 1/H(4000) ≈ 11% of all words.
	top := s.Top
	if top[0].Word != Word(0) || top[1].Word != Word(1) {
		t.Errorf("top words %v, want %q then %q", top[:2], Word(0), Word(1))
	}
	share := float64(top[0].Count) / float64(words)
	ratio := float64(top[1].Count) / float64(top[0].Count)
	if share < 0.10 || share > 0.13 || ratio < 0.45 || ratio > 0.55 {
		t.Errorf("top word share %.3f (want ≈0.113), rank1/rank0 %.3f (want ≈0.5)", share, ratio)
	}
}

func TestCountSeparators(t *testing.T) {
	got := Count([]byte("  a b\ta\r\nb  a\v\fé{x} "))
	want := Counts{"a": 3, "b": 2, "é{x}": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(Count(nil)) != 0 || len(Count([]byte(" \n "))) != 0 {
		t.Error("counted words in blank input")
	}
}

func TestCounterAddsUp(t *testing.T) {
	var c Counter
	c.Add([]byte("x y "))
	c.Add([]byte("y z"))
	if c.Words() != 4 || fmt.Sprint(c.Counts()) != fmt.Sprint(Counts{"x": 1, "y": 2, "z": 1}) {
		t.Errorf("got %d %v", c.Words(), c.Counts())
	}
}

func TestEncodeMergeSummarize(t *testing.T) {
	a := Counts{"b": 2, "a": 2, "quote\"d": 1}
	enc := a.Encode()
	if string(enc) != `{"a":2,"b":2,"quote\"d":1}` {
		t.Errorf("encoding %s", enc)
	}
	d, err := DecodeCounts(enc)
	if err != nil || fmt.Sprint(d) != fmt.Sprint(a) {
		t.Fatalf("decode: %v %v", d, err)
	}
	if _, err := DecodeCounts([]byte("null")); err == nil {
		t.Error("null decoded as counts")
	}
	if _, err := DecodeCounts([]byte(`{"a":"x"}`)); err == nil {
		t.Error("string count decoded")
	}
	d.Merge(Counts{"a": 5, "c": 1})
	s := Summarize(d, 3)
	want := Summary{Words: 11, Distinct: 4, Top: []WordCount{{"a", 7}, {"b", 2}, {"c", 1}}}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("summary %+v, want %+v", s, want)
	}
	if got := Summarize(Counts{}, 10); got.Words != 0 || len(got.Top) != 0 || got.Top == nil {
		t.Errorf("empty summary %+v", got)
	}
}

func TestMergeOfChunksEqualsWhole(t *testing.T) {
	// Counting chunks apart and merging equals counting them together.
	total := Counts{}
	var all []byte
	var words int64
	for i := range 5 {
		b, w := GenerateChunk(9, i, 100_000)
		words += w
		total.Merge(Count(b))
		all = append(all, b...)
	}
	whole := Count(all)
	if fmt.Sprint(whole) != fmt.Sprint(total) || whole.Total() != words {
		t.Error("merged chunk counts differ from the count of the whole")
	}
}

func TestGenRequestValidate(t *testing.T) {
	s3 := &S3{Endpoint: "127.0.0.1:9000", Bucket: "b"}
	for _, tc := range []struct {
		r  GenRequest
		ok bool
	}{
		{GenRequest{Bytes: 10, Via: ViaHandoff}, true},
		{GenRequest{Bytes: 10, Via: ViaS3, Run: "r", S3: s3}, true},
		{GenRequest{Bytes: 10, Via: ViaS3, Run: "r"}, false},
		{GenRequest{Bytes: 10, Via: ViaS3, S3: s3}, false},
		{GenRequest{Bytes: 0, Via: ViaHandoff}, false},
		{GenRequest{Bytes: MaxChunk + 1, Via: ViaHandoff}, false},
		{GenRequest{Bytes: 10, Via: "ftp"}, false},
		{GenRequest{Bytes: 10, Chunk: -1, Via: ViaHandoff}, false},
	} {
		if err := tc.r.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: err %v", tc.r, err)
		}
	}
}

// cpuTime returns the CPU time the process has used, user plus system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPUThroughput adds the MB/cpu-s metric: throughput per second of CPU
// the process used, which stays meaningful when other jobs share the cores
// (MB/s is wall-clock and drops under contention).
func reportCPUThroughput(b *testing.B, start time.Duration, bytes int64) {
	if cpu := cpuTime() - start; cpu > 0 {
		b.ReportMetric(float64(bytes)*float64(b.N)/cpu.Seconds()/1e6, "MB/cpu-s")
	}
}

func BenchmarkGenerate(b *testing.B) {
	buf := make([]byte, 64<<20)
	b.SetBytes(int64(len(buf)))
	chunk := 0
	start := cpuTime()
	for b.Loop() {
		Generate(buf, 1, chunk)
		chunk++
	}
	reportCPUThroughput(b, start, int64(len(buf)))
}

func BenchmarkCount(b *testing.B) {
	buf, _ := GenerateChunk(1, 0, 64<<20)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		var c Counter
		c.Add(buf)
	}
	reportCPUThroughput(b, start, int64(len(buf)))
}

// BenchmarkCountMap is the baseline the Counter is measured against: the
// same scan with a map[string]int64.
func BenchmarkCountMap(b *testing.B) {
	buf, _ := GenerateChunk(1, 0, 64<<20)
	b.SetBytes(int64(len(buf)))
	start := cpuTime()
	for b.Loop() {
		m := map[string]int64{}
		i, n := 0, len(buf)
		for {
			for i < n && isSpace[buf[i]] {
				i++
			}
			if i == n {
				break
			}
			j := i
			for i < n && !isSpace[buf[i]] {
				i++
			}
			m[string(buf[j:i])]++
		}
	}
	reportCPUThroughput(b, start, int64(len(buf)))
}

func BenchmarkEncodeDecode(b *testing.B) {
	buf, _ := GenerateChunk(1, 0, 8<<20)
	c := Count(buf)
	for b.Loop() {
		if _, err := DecodeCounts(c.Encode()); err != nil {
			b.Fatal(err)
		}
	}
}

// referenceCount is the obvious implementation the Counter must agree with.
func referenceCount(b []byte) Counts {
	c := Counts{}
	for _, w := range bytes.FieldsFunc(b, func(r rune) bool { return r < 128 && isSpace[r] }) {
		c[string(w)]++
	}
	return c
}

func TestCounterManyDistinct(t *testing.T) {
	// Enough distinct words to grow the table several times.
	var b []byte
	for i := range 100_000 {
		b = fmt.Appendf(b, "w%d x%d\n", i, i%7)
	}
	got, want := Count(b), referenceCount(b)
	if len(got) != 100_007 || !reflect.DeepEqual(got, want) {
		t.Errorf("got %d distinct words, want %d", len(got), len(want))
	}
}

func FuzzCount(f *testing.F) {
	f.Add([]byte("a b a\n"))
	f.Add([]byte("  \t\r\n"))
	f.Add([]byte("é{x}\x00\xff a\va\fa"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Counter
		c.Add(b)
		got, want := c.Counts(), referenceCount(b)
		if !reflect.DeepEqual(got, want) || c.Words() != want.Total() {
			t.Fatalf("Count(%q) = %v (%d words), want %v", b, got, c.Words(), want)
		}
	})
}
