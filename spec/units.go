package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Size suffixes accepted by ParseBytes, as in Kubernetes quantities, plus "B"
// for plain bytes.
var byteUnits = map[string]int64{
	"B":  1,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
	"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}

// binaryUnits are the suffixes Bytes is written back with, largest first.
var binaryUnits = []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"}

var maxBytes = big.NewRat(1<<63-1, 1)

// ParseBytes parses a size: a whole number of bytes ("1048576"), or a decimal
// number with a binary suffix (Ki, Mi, Gi, Ti, Pi, Ei), a decimal suffix (k,
// M, G, T, P, E) or B, such as "128Mi", "1.5Gi", "64M" or "900B". A fraction of
// a byte is rounded up, as Kubernetes does. Sizes are never negative.
func ParseBytes(s string) (Bytes, error) {
	num := s[:len(s)-len(strings.TrimLeft(s, "0123456789."))]
	unit := int64(1)
	if suffix := s[len(num):]; suffix != "" {
		var ok bool
		if unit, ok = byteUnits[suffix]; !ok && num != "" {
			return 0, fmt.Errorf("%q has an unknown unit %q; use Ki, Mi, Gi, Ti (binary), k, M, G, T (decimal) or B", s, suffix)
		}
	}
	if !isDecimal(num) {
		if strings.HasPrefix(s, "-") {
			return 0, fmt.Errorf("%q is negative; a size is 0 or more bytes", s)
		}
		return 0, fmt.Errorf("%q is not a size; write a number of bytes or a number with a unit, such as 128Mi, 1.5Gi or 64M", s)
	}
	r, _ := new(big.Rat).SetString(num) // a decimal always parses
	r.Mul(r, new(big.Rat).SetInt64(unit))
	if r.Cmp(maxBytes) > 0 {
		return 0, fmt.Errorf("%q is too large; the most is 8Ei", s)
	}
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !r.IsInt() {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return 0, fmt.Errorf("%q is too large; the most is 8Ei", s)
	}
	return Bytes(n.Int64()), nil
}

// isDecimal reports whether s is digits with at most one '.' among them.
func isDecimal(s string) bool {
	digits, dots := 0, 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// exact returns the shortest string that ParseBytes reads back as exactly b:
// the plain number or a (possibly fractional) binary unit.
func (b Bytes) exact() string {
	best := strconv.FormatInt(int64(b), 10)
	if b <= 0 {
		return best
	}
	for i, u := range binaryUnits {
		shift := uint(10 * (len(binaryUnits) - i))
		r := new(big.Rat).SetFrac(big.NewInt(int64(b)), new(big.Int).Lsh(big.NewInt(1), shift))
		s := r.FloatString(int(shift)) // a power of two divides out in shift digits
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		if s += u; len(s) < len(best) {
			best = s
		}
	}
	return best
}

// String returns b for people: "900B", "128Mi", or "1.5Gi" rounded to one
// decimal place when the size is not a whole number of the unit.
func (b Bytes) String() string {
	for i, u := range binaryUnits {
		size := int64(1) << (10 * (len(binaryUnits) - i))
		if b >= Bytes(size) || -b >= Bytes(size) {
			s := strconv.FormatFloat(float64(b)/float64(size), 'f', 1, 64)
			return strings.TrimSuffix(s, ".0") + u
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalYAML writes b as a plain number or, when exact and shorter, with a
// binary unit ("128Mi").
func (b Bytes) MarshalYAML() (any, error) {
	if s := b.exact(); strings.HasSuffix(s, "i") {
		return s, nil
	}
	return int64(b), nil
}

// UnmarshalYAML reads an integer or a string such as "128Mi" (see ParseBytes).
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a size such as 128Mi, 1Gi or 64M")
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if err := n.Decode(&i); err != nil {
			return fmt.Errorf("%s is not a size that fits in 64 bits", n.Value)
		}
		if i < 0 {
			return fmt.Errorf("%d is negative; a size is 0 or more bytes", i)
		}
		*b = Bytes(i)
		return nil
	}
	v, err := ParseBytes(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalJSON writes b as a JSON number or, when exact and shorter, a string
// with a binary unit ("128Mi").
func (b Bytes) MarshalJSON() ([]byte, error) {
	if s := b.exact(); strings.HasSuffix(s, "i") {
		return json.Marshal(s)
	}
	return strconv.AppendInt(nil, int64(b), 10), nil
}

// UnmarshalJSON reads a JSON number of bytes or a string such as "128Mi".
func (b *Bytes) UnmarshalJSON(data []byte) error {
	s := string(data)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	} else if s == "null" {
		return nil
	}
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String returns d in Go syntax, such as "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write a number with a unit, such as 30s, 1m30s or 500ms", s)
	}
	return Duration(v), nil
}

// MarshalYAML writes d as a string such as "1m30s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a Go duration string such as "30s" or "1m30s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a duration such as 30s or 1m30s")
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalJSON writes d as a JSON string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a JSON string such as "30s" or "1m30s".
func (d *Duration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("want a duration string such as \"30s\"")
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes f in the spec format. Strings that span lines or have
// leading or trailing space are written double-quoted, because the YAML
// package's block style for them does not always read back: they are
// swapped for placeholders while encoding (each ends in a space, so no
// string left in place can equal one), then put back.
func (f Function) MarshalYAML() (any, error) {
	type plain Function // without this method
	var hidden []string
	hide := func(s string) string {
		if !strings.ContainsAny(s, "\n\r") && strings.TrimSpace(s) == s {
			return s
		}
		hidden = append(hidden, s)
		return fmt.Sprintf("spec-hidden-%d ", len(hidden)-1)
	}
	f.Run.Command, f.Run.Go, f.Run.Dir = hide(f.Run.Command), hide(f.Run.Go), hide(f.Run.Dir)
	if f.Run.Args != nil {
		args := make([]string, len(f.Run.Args))
		for i, a := range f.Run.Args {
			args[i] = hide(a)
		}
		f.Run.Args = args
	}
	if f.Env != nil {
		env := make(map[string]string, len(f.Env))
		for k, v := range f.Env {
			env[hide(k)] = hide(v)
		}
		f.Env = env
	}
	var n yaml.Node
	if err := n.Encode(plain(f)); err != nil {
		return nil, err
	}
	if len(hidden) > 0 {
		unhide(&n, hidden)
	}
	return &n, nil
}

func unhide(n *yaml.Node, hidden []string) {
	var i int
	if n.Kind == yaml.ScalarNode && strings.HasSuffix(n.Value, " ") {
		if _, err := fmt.Sscanf(n.Value, "spec-hidden-%d ", &i); err == nil && i >= 0 && i < len(hidden) {
			n.Value, n.Style = hidden[i], yaml.DoubleQuotedStyle
		}
	}
	for _, c := range n.Content {
		unhide(c, hidden)
	}
}
