package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Log rotation and tail sizes.
const (
	logRotateSize = 16 << 20
	tailKeep      = 8 << 10  // bytes of the current run kept for start errors
	tailMax       = 16 << 10 // trimmed back to tailKeep when exceeded
)

// logSink appends instance output to a file, rotating it at logRotateSize,
// and keeps the end of the current process's output for error messages.
type logSink struct {
	mu   sync.Mutex // guards all following fields
	path string     // empty: no file
	f    *os.File
	size int64
	err  error  // first write error, reported once
	tl   []byte // output of the current run, last tailKeep..tailMax bytes
}

func openLogSink(path string) (*logSink, error) {
	s := &logSink{path: path}
	if path == "" {
		return s, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *logSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

// Write appends p; it never fails, so a full disk does not block the
// instance's output pipe.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tl = append(s.tl, p...)
	if len(s.tl) > tailMax {
		s.tl = append(s.tl[:0], s.tl[len(s.tl)-tailKeep:]...)
	}
	if s.f == nil {
		return len(p), nil
	}
	if s.size > 0 && s.size+int64(len(p)) > logRotateSize {
		s.f.Close()
		s.f = nil
		if err := os.Rename(s.path, s.path+".1"); err != nil && s.err == nil {
			s.err = err
		}
		if err := s.open(); err != nil {
			if s.err == nil {
				s.err = err
			}
			return len(p), nil
		}
	}
	n, err := s.f.Write(p)
	s.size += int64(n)
	if err != nil && s.err == nil {
		s.err = err
	}
	return len(p), nil
}

func (s *logSink) copyFrom(r io.Reader) {
	buf := make([]byte, 32<<10)
	io.CopyBuffer(s, r, buf)
}

// newRun forgets the tail of the previous process.
func (s *logSink) newRun() {
	s.mu.Lock()
	s.tl = s.tl[:0]
	s.mu.Unlock()
}

// tail returns up to n last lines of the current process's output.
func (s *logSink) tail(n int) []string {
	s.mu.Lock()
	b := bytes.TrimRight(s.tl, "\n")
	text := string(b)
	s.mu.Unlock()
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// moveTo renames the log file to path (a parked process's log becoming its
// instance's) and writes there from now on.
func (s *logSink) moveTo(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.Rename(s.path, path); err != nil {
		return err
	}
	s.path = path
	return nil
}

func (s *logSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
