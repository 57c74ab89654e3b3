package state

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockHolder returns the id of the process holding the flock on path, read
// from /proc/locks, or 0 when it cannot tell.
func lockHolder(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	// /proc/locks names the file as MAJOR:MINOR:INODE, the device numbers
	// in hex, as the kernel's new_encode_dev splits them.
	dev := uint64(st.Dev)
	major := (dev >> 8 & 0xfff) | (dev >> 32 &^ 0xfff)
	minor := (dev & 0xff) | (dev >> 12 &^ 0xff)
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)

	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"
		// Blocked waiters are listed as "1: -> FLOCK ..."; skip them.
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		if fields[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid > 0 {
			return pid
		}
	}
	return 0
}
