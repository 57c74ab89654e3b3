package spec

import "fmt"

// CheckName reports whether name can name a function: a DNS label of 1–63
// lowercase letters, digits and '-', starting with a letter. Paths and URLs
// are built from function names, so every API checks them with this.
func CheckName(name string) error {
	if len(name) == 0 || len(name) > 63 || !dnsLabel.MatchString(name) {
		return fmt.Errorf("%w: function name %q is not a DNS label; use 1–63 lowercase letters, digits and '-', starting with a letter", ErrInvalid, name)
	}
	return nil
}
