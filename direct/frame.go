package direct

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Protocol constants.
const (
	// Magic opens every hello.
	Magic = "HDIR"
	// Version is the protocol version this package speaks.
	Version = 1

	// MaxPayload is the largest call or result payload.
	MaxPayload = 16 << 20
	// MaxToken is the largest lease token.
	MaxToken = 1 << 10
	// MaxText is the largest error text, refusal reason or goodbye.
	MaxText = 4 << 10
	// MaxFrame is the largest frame: a call or result with MaxPayload.
	MaxFrame = callHeader + MaxPayload
)

const callHeader = 1 + 8 + 1 + 4 // kind, id, flags or status, length

// Kind is a frame's first byte.
type Kind byte

// Frame kinds.
const (
	KindHello   Kind = 'H'
	KindWelcome Kind = 'W'
	KindCall    Kind = 'C'
	KindResult  Kind = 'R'
	KindGoodbye Kind = 'G'
)

// Code answers a hello.
type Code uint8

// Welcome codes.
const (
	CodeOK        Code = 0 // accepted
	CodeRefused   Code = 1 // the lease token is not valid for this executor
	CodeVersion   Code = 2 // the version is not spoken here
	CodeMalformed Code = 3 // the hello was not a hello
	maxCode            = CodeMalformed
)

// Status is a result's outcome.
type Status uint8

// Result statuses.
const (
	StatusOK       Status = 0 // the payload is the function's result
	StatusFunction Status = 1 // the function failed; the payload is its error text
	StatusPlatform Status = 2 // the executor could not run the call; the payload says why
	maxStatus             = StatusPlatform
)

// Call flags.
const (
	// FlagRef marks a call whose payload is a reference to its input
	// (package ref: a token of the node's buffer store, at most MaxRef
	// bytes), not the input itself. The executor reads the referenced
	// bytes (on its node without a copy) and runs the handler on them:
	// how inputs over MaxPayload reach an executor.
	FlagRef uint8 = 1 << 0

	knownFlags = FlagRef
)

// MaxRef bounds the payload of a FlagRef call.
const MaxRef = 4 << 10

// Frame is one decoded frame. Which fields count depends on Kind.
type Frame struct {
	Kind Kind

	// Hello.
	Version  uint16
	Executor uint32
	Token    string

	// Welcome: Code, MaxInFlight and Text.
	Code        Code
	MaxInFlight uint32

	// Call (ID, Flags, Payload) and result (ID, Status, Payload). Payload
	// aliases the bytes Decode was given.
	ID      uint64
	Flags   uint8
	Status  Status
	Payload []byte

	// Welcome and goodbye.
	Text string
}

// AppendFrame appends f's encoding to dst. It fails with ErrTooLarge when a
// field exceeds its limit and with ErrMalformed for an unknown kind, code,
// status or flag, or an error text that is not UTF-8.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	switch f.Kind {
	case KindHello:
		if len(f.Token) > MaxToken {
			return dst, fmt.Errorf("%w: lease token of %d bytes exceeds %d", ErrTooLarge, len(f.Token), MaxToken)
		}
		dst = append(dst, byte(KindHello))
		dst = append(dst, Magic...)
		dst = binary.BigEndian.AppendUint16(dst, f.Version)
		dst = binary.BigEndian.AppendUint32(dst, f.Executor)
		return appendText16(dst, f.Token), nil
	case KindWelcome:
		if f.Code > maxCode {
			return dst, fmt.Errorf("%w: welcome code %d", ErrMalformed, f.Code)
		}
		if err := checkText(f.Text); err != nil {
			return dst, err
		}
		dst = append(dst, byte(KindWelcome), byte(f.Code))
		dst = binary.BigEndian.AppendUint32(dst, f.MaxInFlight)
		return appendText16(dst, f.Text), nil
	case KindCall:
		if err := checkCall(f.Flags, len(f.Payload)); err != nil {
			return dst, err
		}
		return appendCall(dst, f.ID, f.Flags, f.Payload), nil
	case KindResult:
		switch {
		case f.Status > maxStatus:
			return dst, fmt.Errorf("%w: result status %d", ErrMalformed, f.Status)
		case f.Status != StatusOK && (len(f.Payload) > MaxText || !utf8.Valid(f.Payload)):
			return dst, fmt.Errorf("%w: error text of %d bytes is over %d or not UTF-8", ErrMalformed, len(f.Payload), MaxText)
		case len(f.Payload) > MaxPayload:
			return dst, fmt.Errorf("%w: result of %d bytes exceeds %d; return a reference", ErrTooLarge, len(f.Payload), MaxPayload)
		}
		return appendResult(dst, f.ID, f.Status, f.Payload), nil
	case KindGoodbye:
		if err := checkText(f.Text); err != nil {
			return dst, err
		}
		return appendText16(append(dst, byte(KindGoodbye)), f.Text), nil
	}
	return dst, fmt.Errorf("%w: frame kind %#x", ErrMalformed, byte(f.Kind))
}

// appendCall encodes a call whose payload is known to be within limits.
func appendCall(dst []byte, id uint64, flags uint8, payload []byte) []byte {
	dst = append(dst, byte(KindCall))
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = append(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// appendResult encodes a result whose payload is known to be within limits.
func appendResult(dst []byte, id uint64, status Status, payload []byte) []byte {
	dst = append(dst, byte(KindResult))
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = append(dst, byte(status))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// Decode parses one frame. The whole of b must be the frame. It never
// panics; errors wrap ErrMalformed. The frame's Payload aliases b.
func Decode(b []byte) (Frame, error) {
	var f Frame
	if len(b) == 0 {
		return f, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	f.Kind = Kind(b[0])
	d := decoder{b: b[1:]}
	switch f.Kind {
	case KindHello:
		if string(d.next(len(Magic))) != Magic {
			return f, fmt.Errorf("%w: hello without the %q magic", ErrMalformed, Magic)
		}
		f.Version = d.u16()
		f.Executor = d.u32()
		tok := d.text16(MaxToken)
		f.Token = string(tok)
	case KindWelcome:
		f.Code = Code(d.u8())
		f.MaxInFlight = d.u32()
		f.Text = string(d.text16(MaxText))
		if f.Code > maxCode {
			d.fail("welcome code %d", f.Code)
		}
		if !utf8.ValidString(f.Text) {
			d.fail("welcome text is not UTF-8")
		}
	case KindCall:
		f.ID = d.u64()
		f.Flags = d.u8()
		f.Payload = d.bytes32(MaxPayload)
		switch {
		case f.Flags&^knownFlags != 0:
			d.fail("call flags %#x (version %d defines %#x)", f.Flags, Version, knownFlags)
		case f.Flags&FlagRef != 0 && len(f.Payload) > MaxRef:
			d.fail("a reference of %d bytes exceeds %d", len(f.Payload), MaxRef)
		}
	case KindResult:
		f.ID = d.u64()
		f.Status = Status(d.u8())
		f.Payload = d.bytes32(MaxPayload)
		switch {
		case f.Status > maxStatus:
			d.fail("result status %d", f.Status)
		case f.Status != StatusOK && (len(f.Payload) > MaxText || !utf8.Valid(f.Payload)):
			d.fail("error text of %d bytes is over %d or not UTF-8", len(f.Payload), MaxText)
		}
	case KindGoodbye:
		f.Text = string(d.text16(MaxText))
		if !utf8.ValidString(f.Text) {
			d.fail("goodbye text is not UTF-8")
		}
	default:
		return f, fmt.Errorf("%w: frame kind %#x", ErrMalformed, b[0])
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after a %c frame", len(d.b), f.Kind)
	}
	if d.err != nil {
		return Frame{}, d.err
	}
	return f, nil
}

// decoder reads fields off b; after the first error every read returns
// zero values and err keeps that first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) next(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail("frame cut short (%d bytes wanted, %d left)", n, len(d.b))
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8() uint8 {
	if p := d.next(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.next(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.next(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.next(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) text16(limit int) []byte {
	n := int(d.u16())
	if n > limit {
		d.fail("text of %d bytes exceeds %d", n, limit)
		return nil
	}
	return d.next(n)
}

func (d *decoder) bytes32(limit int) []byte {
	n := d.u32()
	if n > uint32(limit) {
		d.fail("payload of %d bytes exceeds %d", n, limit)
		return nil
	}
	return d.next(int(n))
}

func appendText16(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func checkText(s string) error {
	if len(s) > MaxText || !utf8.ValidString(s) {
		return fmt.Errorf("%w: text of %d bytes is over %d or not UTF-8", ErrMalformed, len(s), MaxText)
	}
	return nil
}

// clipText cuts s to at most MaxText bytes of valid UTF-8, for error texts
// that come from handlers.
func clipText(s string) string {
	if !utf8.ValidString(s) {
		s = string([]rune(s)) // replaces invalid bytes with U+FFFD
	}
	if len(s) <= MaxText {
		return s
	}
	const ell = "…"
	s = s[:MaxText-len(ell)]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + ell
}

// checkCall checks a call's flags and payload size.
func checkCall(flags uint8, n int) error {
	switch {
	case flags&^knownFlags != 0:
		return fmt.Errorf("%w: call flags %#x (version %d defines %#x)", ErrMalformed, flags, Version, knownFlags)
	case flags&FlagRef != 0 && n > MaxRef:
		return fmt.Errorf("%w: a reference of %d bytes exceeds %d", ErrTooLarge, n, MaxRef)
	case n > MaxPayload:
		return fmt.Errorf("%w: payload of %d bytes exceeds %d; pass it by reference", ErrTooLarge, n, MaxPayload)
	}
	return nil
}
