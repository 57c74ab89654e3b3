package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func roundTrip(t *testing.T, req *Request, status int, ah http.Header, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := WriteHello(w, "tok"); err != nil {
		t.Fatal(err)
	}
	if err := WriteRequest(w, req); err != nil {
		t.Fatal(err)
	}
	if err := WriteAnswerHead(w, status, ah); err != nil {
		t.Fatal(err)
	}
	bw := NewBodyWriter(w)
	bw.Write(body)
	bw.Close()

	r := bufio.NewReader(&buf)
	if tok, err := ReadHello(r); err != nil || tok != "tok" {
		t.Fatalf("hello: %q %v", tok, err)
	}
	got, err := ReadRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Target != req.Target || !bytes.Equal(got.Body, req.Body) || !reflect.DeepEqual(got.Header, req.Header) {
		t.Fatalf("request: got %+v, want %+v", got, req)
	}
	st, h, err := ReadAnswerHead(r)
	if err != nil || st != status || !reflect.DeepEqual(h, ah) {
		t.Fatalf("answer head: %d %v %v", st, h, err)
	}
	br := NewBodyReader(r)
	b, err := io.ReadAll(br)
	if err != nil || !bytes.Equal(b, body) || !br.Complete() {
		t.Fatalf("answer body: %d bytes, %v, complete %v", len(b), err, br.Complete())
	}
}

func TestRoundTrip(t *testing.T) {
	roundTrip(t, &Request{Target: "echo-1", Header: http.Header{"X-A": {"1", "2"}, "Content-Type": {"text/plain"}}, Body: []byte("hello")},
		200, http.Header{"X-B": {"b"}}, []byte("world"))
	roundTrip(t, &Request{Target: "i", Header: http.Header{}, Body: []byte{}}, 204, http.Header{}, nil)
	roundTrip(t, &Request{Target: "i", Header: http.Header{}, Body: bytes.Repeat([]byte("x"), MaxBody)}, 200, http.Header{}, bytes.Repeat([]byte("y"), 3*MaxChunk+7))
}

func TestLimits(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := WriteRequest(w, &Request{Body: make([]byte, MaxBody+1)}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized body: %v", err)
	}
	// A peer that claims a huge body is refused before anything is allocated.
	frame := append([]byte(magicRequest), 0, 1, 'i', 0, 0, 0xff, 0xff, 0xff, 0xff)
	if _, err := ReadRequest(bufio.NewReader(bytes.NewReader(frame))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("claimed 4 GiB body: %v", err)
	}
	if _, err := ReadRequest(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\n"))); !errors.Is(err, ErrMalformed) {
		t.Fatalf("HTTP spoken to the wire port: %v", err)
	}
}

func TestBrokenAnswer(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	WriteAnswerHead(w, 200, http.Header{})
	bw := NewBodyWriter(w)
	bw.Write([]byte("partial"))
	bw.Abort("instance died")
	r := bufio.NewReader(&buf)
	if _, _, err := ReadAnswerHead(r); err != nil {
		t.Fatal(err)
	}
	br := NewBodyReader(r)
	b, err := io.ReadAll(br)
	if !errors.Is(err, ErrBroken) || string(b) != "partial" || br.Complete() {
		t.Fatalf("got %q, %v; want the partial body and ErrBroken", b, err)
	}
	if !strings.Contains(err.Error(), "instance died") {
		t.Fatalf("error %q lost the reason", err)
	}
}

func TestTruncatedFrames(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	WriteRequest(w, &Request{Target: "x", Header: http.Header{"A": {"b"}}, Body: []byte("body")})
	full := buf.Bytes()
	for n := 1; n < len(full); n++ {
		if _, err := ReadRequest(bufio.NewReader(bytes.NewReader(full[:n]))); err == nil {
			t.Fatalf("a request cut to %d of %d bytes parsed", n, len(full))
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	WriteRequest(w, &Request{Target: "echo-1", Header: http.Header{"X-Handoff-Request-Id": {"abc"}}, Body: []byte("hi")})
	f.Add(buf.Bytes())
	f.Add([]byte("HW1Q\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		// Whatever parses writes back and parses to the same request.
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		if err := WriteRequest(bw, req); err != nil {
			t.Fatalf("a parsed request does not write: %v", err)
		}
		again, err := ReadRequest(bufio.NewReader(&out))
		if err != nil || again.Target != req.Target || !bytes.Equal(again.Body, req.Body) || !reflect.DeepEqual(again.Header, req.Header) {
			t.Fatalf("round trip changed the request: %+v / %+v (%v)", req, again, err)
		}
	})
}

func FuzzAnswer(f *testing.F) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	WriteAnswerHead(w, 200, http.Header{"A": {"b"}})
	bw := NewBodyWriter(w)
	bw.Write([]byte("data"))
	bw.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		if _, _, err := ReadAnswerHead(r); err != nil {
			return
		}
		// The body reads the same through Read and through WriteTo (which
		// io.Copy takes), ends the same way and is complete alike.
		rest := data[len(data)-r.Buffered():]
		byRead := NewBodyReader(bufio.NewReader(bytes.NewReader(rest)))
		a, aerr := io.ReadAll(byRead)
		var b bytes.Buffer
		byWriteTo := NewBodyReader(bufio.NewReaderSize(bytes.NewReader(rest), 16))
		_, berr := byWriteTo.WriteTo(&b)
		if !bytes.Equal(a, b.Bytes()) || (aerr == nil) != (berr == nil) || byRead.Complete() != byWriteTo.Complete() {
			t.Fatalf("Read gave %q, %v; WriteTo %q, %v", a, aerr, b.Bytes(), berr)
		}
	})
}

func TestWriteToAcrossChunksAndBuffers(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	WriteAnswerHead(w, 200, http.Header{})
	bw := NewBodyWriter(w)
	want := bytes.Repeat([]byte("0123456789"), 300000) // 3 chunks
	bw.Write(want[:10])
	bw.Write(want[10:])
	bw.Close()
	r := bufio.NewReaderSize(&buf, 4096)
	if _, _, err := ReadAnswerHead(r); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	body := NewBodyReader(r)
	n, err := io.Copy(&got, body)
	if err != nil || n != int64(len(want)) || !bytes.Equal(got.Bytes(), want) || !body.Complete() {
		t.Fatalf("copied %d of %d bytes, %v, complete %v", n, len(want), err, body.Complete())
	}
}
