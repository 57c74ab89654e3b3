package suite

import (
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// targetCeiling is the S3 series' ceiling: an HTTP server in the harness
// that answers the S3 calls the series make and does no work with the
// bytes (a PUT's body is read into a reused, touched buffer and dropped;
// a GET writes the payload from memory). Measured with the same client,
// it is the most any S3 server could give that client on this machine's
// loopback, so a bar far beyond it is out of reach for every server. It
// runs in the harness's process: it saves a process hop but shares the
// client's scheduler and GC, so it is a ceiling within some tens of per
// cent, not a strict bound (a node agent's 1 GiB GET has matched it).
const targetCeiling = "ceiling"

// ceilingServer is the HTTP server of targetCeiling.
type ceilingServer struct {
	ln      net.Listener
	srv     *http.Server
	payload []byte        // what a GET of n bytes answers: payload[:n]
	bufs    chan []byte   // touched buffers PUT bodies are read into
	uploads atomic.Uint64 // multipart upload ids
	started string        // Last-Modified of every object

	// mu guards the following fields.
	mu    sync.Mutex
	sizes map[string]int64 // object key → size
	parts map[string]int64 // upload id → bytes received
}

// ceilingBuf is the size of a buffer a PUT body is read into; longer
// bodies wrap around it.
const ceilingBuf = 16 << 20

// startCeiling starts the ceiling server on loopback, answering GETs from
// payload.
func startCeiling(payload []byte) (*ceilingServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &ceilingServer{ln: ln, payload: payload, started: time.Now().UTC().Format(http.TimeFormat), bufs: make(chan []byte, 8), sizes: map[string]int64{}, parts: map[string]int64{}}
	for range cap(c.bufs) {
		b := make([]byte, ceilingBuf)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touched before timing, as the harness's own buffers
		}
		c.bufs <- b
	}
	c.srv = &http.Server{Handler: c}
	go c.srv.Serve(ln)
	return c, nil
}

func (c *ceilingServer) Endpoint() string { return c.ln.Addr().String() }

func (c *ceilingServer) Close() { c.srv.Close() }

// drain reads r to its end into a touched buffer and returns its length.
func (c *ceilingServer) drain(r io.Reader) (int64, error) {
	buf := <-c.bufs
	defer func() { c.bufs <- buf }()
	var n int64
	for {
		k, err := r.Read(buf[n%ceilingBuf:])
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func (c *ceilingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/")
	q := r.URL.Query()
	const etag = `"00000000000000000000000000000000"`
	switch {
	case r.Method == http.MethodPut && q.Has("uploadId"):
		n, err := c.drain(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.parts[q.Get("uploadId")] += n
		c.mu.Unlock()
		w.Header().Set("ETag", etag)
	case r.Method == http.MethodPut:
		n, err := c.drain(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.sizes[key] = n
		c.mu.Unlock()
		w.Header().Set("ETag", etag)
	case r.Method == http.MethodPost && q.Has("uploads"):
		id := strconv.FormatUint(c.uploads.Add(1), 10)
		c.xml(w, struct {
			XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
			Bucket   string
			Key      string
			UploadId string
		}{Bucket: "ceiling", Key: key, UploadId: id})
	case r.Method == http.MethodPost && q.Has("uploadId"):
		io.Copy(io.Discard, r.Body)
		id := q.Get("uploadId")
		c.mu.Lock()
		c.sizes[key] = c.parts[id]
		delete(c.parts, id)
		c.mu.Unlock()
		c.xml(w, struct {
			XMLName xml.Name `xml:"CompleteMultipartUploadResult"`
			Bucket  string
			Key     string
			ETag    string
		}{Bucket: "ceiling", Key: key, ETag: etag})
	case r.Method == http.MethodGet:
		c.mu.Lock()
		n, ok := c.sizes[key]
		c.mu.Unlock()
		if !ok || n > int64(len(c.payload)) {
			http.Error(w, "no such key", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("ETag", etag)
		w.Header().Set("Last-Modified", c.started)
		w.Write(c.payload[:n])
	case r.Method == http.MethodDelete:
		c.mu.Lock()
		delete(c.sizes, key)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, fmt.Sprintf("%s %s is not served by the ceiling server", r.Method, r.URL), http.StatusNotImplemented)
	}
}

func (c *ceilingServer) xml(w http.ResponseWriter, v any) {
	out, _ := xml.Marshal(v)
	w.Header().Set("Content-Type", "application/xml")
	w.Write(out)
}
