package direct

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// seedFrames are valid frames of every kind; FuzzDecode starts from them
// (and from testdata/fuzz/FuzzDecode).
var seedFrames = []Frame{
	{Kind: KindHello, Version: Version, Executor: 3, Token: "lease-token"},
	{Kind: KindHello, Version: 9, Executor: 1<<32 - 1, Token: strings.Repeat("t", MaxToken)},
	{Kind: KindWelcome, Code: CodeOK, MaxInFlight: 256},
	{Kind: KindWelcome, Code: CodeRefused, Text: "lease expired"},
	{Kind: KindCall, ID: 1, Payload: []byte("hello")},
	{Kind: KindCall, ID: 1<<64 - 1, Payload: []byte{}},
	{Kind: KindCall, ID: 2, Flags: FlagRef, Payload: []byte("v1.k1.reference-token")},
	{Kind: KindResult, ID: 7, Status: StatusOK, Payload: bytes.Repeat([]byte{0xff}, 64)},
	{Kind: KindResult, ID: 8, Status: StatusFunction, Payload: []byte("division by zero")},
	{Kind: KindResult, ID: 9, Status: StatusPlatform, Payload: []byte("result too large")},
	{Kind: KindGoodbye, Text: "executor done"},
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range seedFrames {
		b, err := AppendFrame(nil, &f)
		if err != nil {
			t.Fatalf("%c: %v", f.Kind, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%c: %v", f.Kind, err)
		}
		again, err := AppendFrame(nil, &got)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%c: decoded %+v encodes to %x, want %x (%v)", f.Kind, got, again, b, err)
		}
	}
}

func TestFrameLimits(t *testing.T) {
	bad := []struct {
		f    Frame
		want error
	}{
		{Frame{Kind: KindHello, Token: strings.Repeat("t", MaxToken+1)}, ErrTooLarge},
		{Frame{Kind: KindCall, Payload: make([]byte, MaxPayload+1)}, ErrTooLarge},
		{Frame{Kind: KindCall, Flags: 2}, ErrMalformed},
		{Frame{Kind: KindCall, Flags: FlagRef, Payload: make([]byte, MaxRef+1)}, ErrTooLarge},
		{Frame{Kind: KindResult, Status: 3}, ErrMalformed},
		{Frame{Kind: KindResult, Status: StatusFunction, Payload: []byte{0xff}}, ErrMalformed},
		{Frame{Kind: KindWelcome, Code: 9}, ErrMalformed},
		{Frame{Kind: KindGoodbye, Text: strings.Repeat("x", MaxText+1)}, ErrMalformed},
		{Frame{Kind: 'Z'}, ErrMalformed},
	}
	for _, c := range bad {
		if _, err := AppendFrame(nil, &c.f); !errors.Is(err, c.want) {
			t.Errorf("%c: got %v, want %v", c.f.Kind, err, c.want)
		}
	}
	// A call at the limit encodes and decodes.
	b, err := AppendFrame(nil, &Frame{Kind: KindCall, Payload: make([]byte, MaxPayload)})
	if err != nil || len(b) != MaxFrame {
		t.Fatalf("call at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := Decode(b); err != nil {
		t.Fatal(err)
	}
	// Trailing bytes, short frames and a length over the limit are refused.
	for _, b := range [][]byte{
		append(b[:len(b):len(b)], 0),
		b[:20],
		{'C', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff},
		{},
	} {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%.20x: got %v, want ErrMalformed", b, err)
		}
	}
}

func TestClipText(t *testing.T) {
	long := strings.Repeat("é", MaxText) // 2 bytes a rune
	if s := clipText(long); len(s) > MaxText || !strings.HasSuffix(s, "…") {
		t.Errorf("clipped to %d bytes", len(s))
	}
	if s := clipText("a\xffb"); s != "a\uFFFDb" {
		t.Errorf("got %q", s)
	}
}

// FuzzDecode checks that Decode never panics, that its errors wrap
// ErrMalformed, and that a frame it accepts encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, fr := range seedFrames {
		b, _ := AppendFrame(nil, &fr)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := AppendFrame(nil, &fr)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", fr, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v encodes to %x, want %x", fr, again, b)
		}
	})
}
