//go:build !linux

package stream

import "io"

func scatterer(r io.Reader) func(data, ahead []byte) (int, error) { return nil }
