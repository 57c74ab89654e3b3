//go:build !linux

package baseline

// onTmpfs reports false: only Linux is asked.
func onTmpfs(dir string) bool { return false }
