// Package fdpass carries small JSON messages, each with at most one file
// descriptor, over a Unix SOCK_SEQPACKET socket. It is how an instance hands
// a filled memfd to its node agent and receives one back: the bytes are
// never copied, only the descriptor moves (SCM_RIGHTS).
//
// A seqpacket socket keeps message boundaries and delivers a message's
// descriptor with the message itself, so one read is one message and a
// descriptor can never be attached to the wrong one.
package fdpass

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// MaxMessage is the largest message either side sends or accepts.
const MaxMessage = 16 << 10

// ErrMalformed means the peer sent something that is not a message of this
// protocol: too long, not JSON, or with more than one descriptor.
var ErrMalformed = errors.New("fdpass: malformed message")

// Request is what an instance asks of its node agent.
type Request struct {
	// Op is "put" (a sealed-ready memfd is attached: keep it, return a
	// reference), "get" (return the payload of Ref as a descriptor),
	// "task" (describe the workflow task of Ticket) or "port" (return the
	// end of part Part of the task's port Port, Dir "in" or "out").
	Op string `json:"op"`
	// Ref is the reference to get.
	Ref string `json:"ref,omitempty"`
	// Size and Checksum (CRC-32C) describe the attached memfd of a put.
	Size     int64  `json:"size,omitempty"`
	Checksum uint32 `json:"checksum,omitempty"`
	// Deferred leaves the checksum to the node, which computes it only
	// if the payload ever leaves the node: a hand-over on one node then
	// never passes over the bytes.
	Deferred bool `json:"deferred,omitempty"`
	// Readers, Reads and TTLMillis scope the reference a put creates; zero
	// values take the node's defaults (the callee named by the caller is
	// not known here, so Readers defaults to none: a put must name them).
	Readers   []string `json:"readers,omitempty"`
	Reads     uint32   `json:"reads,omitempty"`
	TTLMillis int64    `json:"ttlMs,omitempty"`

	// Ticket, Dir, Port and Part name a workflow task's port end.
	Ticket string `json:"ticket,omitempty"`
	Dir    string `json:"dir,omitempty"`
	Port   string `json:"port,omitempty"`
	Part   int    `json:"part,omitempty"`
}

// Response answers a Request. On success Error is empty; a get's response
// carries the payload's descriptor.
type Response struct {
	Ref      string `json:"ref,omitempty"`
	Size     int64  `json:"size"`
	Checksum uint32 `json:"checksum"`
	Deferred bool   `json:"deferred,omitempty"` // Checksum is not known (see Request.Deferred)
	Expires  int64  `json:"expires,omitempty"`  // Unix seconds
	Code     string `json:"code,omitempty"`
	Error    string `json:"error,omitempty"`
	// Info answers a "task": the task's description (node.StageInfo).
	Info json.RawMessage `json:"info,omitempty"`
}

// Send writes msg as one message, with f's descriptor attached when f is
// not nil. f stays open; the receiver gets a duplicate.
func Send(c *net.UnixConn, msg any, f *os.File) error {
	b, oob, err := encode(msg, f)
	if err != nil {
		return err
	}
	n, oobn, err := c.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return err
	}
	if n != len(b) || oobn != len(oob) {
		return fmt.Errorf("fdpass: short write (%d of %d bytes)", n, len(b))
	}
	return nil
}

// encode is a message as sent: its JSON, and f's descriptor as rights.
func encode(msg any, f *os.File) (b, oob []byte, err error) {
	if b, err = json.Marshal(msg); err != nil {
		return nil, nil, err
	}
	if len(b) > MaxMessage {
		return nil, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxMessage)
	}
	if f != nil {
		oob = syscall.UnixRights(int(f.Fd()))
	}
	return b, oob, nil
}

// Recv reads one message into msg and returns the descriptor that came
// with it, or nil. A peer that closed the connection gives io.EOF.
func Recv(c *net.UnixConn, msg any) (*os.File, error) {
	buf := make([]byte, MaxMessage+1)
	oob := make([]byte, syscall.CmsgSpace(4*4)) // room to see (and refuse) extra descriptors
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	if n == 0 && oobn == 0 {
		return nil, io.EOF
	}
	return Decode(buf[:n], oob[:oobn], flags, msg)
}

// Decode parses one received message: its bytes, its control data and the
// recvmsg flags. It owns every descriptor in oob: the one it returns, and
// any it closes because the message was refused.
func Decode(b, oob []byte, flags int, msg any) (*os.File, error) {
	fds, perr := fdsOf(oob)
	closeAll := func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	switch {
	case perr != nil:
		closeAll()
		return nil, perr
	case flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0:
		closeAll()
		return nil, fmt.Errorf("%w: message or its control data was truncated (limit %d bytes, one descriptor)", ErrMalformed, MaxMessage)
	case len(b) > MaxMessage:
		closeAll()
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxMessage)
	case len(fds) > 1:
		closeAll()
		return nil, fmt.Errorf("%w: %d descriptors attached, at most one allowed", ErrMalformed, len(fds))
	}
	if err := json.Unmarshal(b, msg); err != nil {
		closeAll()
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(fds) == 0 {
		return nil, nil
	}
	return os.NewFile(uintptr(fds[0]), "fdpass"), nil
}

func fdsOf(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: control data: %v", ErrMalformed, err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != syscall.SOL_SOCKET || m.Header.Type != syscall.SCM_RIGHTS {
			continue
		}
		got, err := syscall.ParseUnixRights(&m)
		if err != nil {
			// Descriptors already gathered are still ours to close.
			for _, fd := range fds {
				syscall.Close(fd)
			}
			return nil, fmt.Errorf("%w: rights: %v", ErrMalformed, err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// Conn is one end of a seqpacket connection driven with blocking system
// calls: a Recv waits in the kernel, which wakes this very thread when the
// peer's message arrives, instead of the runtime's poller parking the
// goroutine and waking it through epoll and the scheduler (on a loaded
// 2-vCPU machine that hop costs more than the exchange itself). Its
// buffers are kept across messages.
//
// Send and Recv may run at the same time as each other, but not two Sends
// or two Recvs. Shutdown unblocks them from any goroutine; Close must not
// run while either is in progress.
type Conn struct {
	f    *os.File // owns the descriptor, in blocking mode
	fd   int
	rbuf []byte // MaxMessage+1: a longer message shows as truncated
	oob  []byte
	wbuf []byte
}

// NewConn takes f, one end of a seqpacket socket, and switches it to
// blocking mode. The Conn owns f from then on.
func NewConn(f *os.File) (*Conn, error) {
	fd := int(f.Fd()) // Fd puts the descriptor in blocking mode
	if typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || typ != syscall.SOCK_SEQPACKET {
		f.Close()
		if err == nil {
			err = fmt.Errorf("socket type %d", typ)
		}
		return nil, fmt.Errorf("fdpass: %s is not a seqpacket socket: %w", f.Name(), err)
	}
	return &Conn{
		f:    f,
		fd:   fd,
		rbuf: make([]byte, MaxMessage+1),
		oob:  make([]byte, syscall.CmsgSpace(4*4)),
	}, nil
}

// Dial connects to the seqpacket socket at path.
func Dial(path string) (*Conn, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fdpass: socket: %w", err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("fdpass: connect %s: %w", path, err)
	}
	return NewConn(os.NewFile(uintptr(fd), path))
}

// File is the Conn's socket, for SO_PEERCRED and the like. Leave its mode
// and its closing to the Conn.
func (c *Conn) File() *os.File { return c.f }

// Send is the package's Send on c.
func (c *Conn) Send(msg any, f *os.File) error {
	b, oob, err := encode(msg, f)
	if err != nil {
		return err
	}
	for {
		err = syscall.Sendmsg(c.fd, b, oob, nil, syscall.MSG_NOSIGNAL)
		if err != syscall.EINTR {
			break
		}
	}
	return err
}

// Recv is the package's Recv on c. A Shutdown while it waits gives io.EOF.
func (c *Conn) Recv(msg any) (*os.File, error) {
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = syscall.Recvmsg(c.fd, c.rbuf, c.oob, syscall.MSG_CMSG_CLOEXEC)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if n == 0 && oobn == 0 {
		return nil, io.EOF
	}
	return Decode(c.rbuf[:n], c.oob[:oobn], flags, msg)
}

// Shutdown ends the connection in both directions: a Send or Recv blocked
// on it returns at once (Recv with io.EOF), as do later ones. Safe to call
// from any goroutine, and more than once.
func (c *Conn) Shutdown() error {
	return syscall.Shutdown(c.fd, syscall.SHUT_RDWR)
}

// Close closes the socket. No Send or Recv may be in progress: Shutdown
// first to end them.
func (c *Conn) Close() error { return c.f.Close() }
