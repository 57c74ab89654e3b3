package csidriver

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// FSType is the filesystem type a volume's mount shows (the store's FUSE
// mount); a volume capability may name it or leave the type empty.
const FSType = "fuse.handoff"

// checkCapability reports why the driver cannot serve a volume
// capability, or nil. Every access mode is served: the store is shared,
// so any number of nodes may read and write a volume at once. Only
// filesystem (mount) volumes exist; the mount is the store's own, so the
// fsType must be empty or FSType and the only mount flags are "ro" and
// "rw".
func checkCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return fmt.Errorf("a volume capability is empty; give an access type (mount) and an access mode")
	}
	switch at := c.GetAccessType().(type) {
	case *csi.VolumeCapability_Block:
		return fmt.Errorf("block volumes are not supported: a store volume is a filesystem; request a filesystem (mount) volume (Kubernetes: volumeMode: Filesystem)")
	case *csi.VolumeCapability_Mount:
		m := at.Mount
		if t := m.GetFsType(); t != "" && t != FSType {
			return fmt.Errorf("fsType %q is not supported: a store volume is the store's own FUSE filesystem; leave fsType empty (or set it to %q)", t, FSType)
		}
		for _, f := range m.GetMountFlags() {
			if f != "ro" && f != "rw" {
				return fmt.Errorf("mount flag %q is not supported: store volumes take only \"ro\" or \"rw\"; remove it from the mountOptions", f)
			}
		}
	default:
		return fmt.Errorf("a volume capability has no access type; give a mount access type (a filesystem volume)")
	}
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		return nil
	case csi.VolumeCapability_AccessMode_UNKNOWN:
		return fmt.Errorf("a volume capability has no access mode; give one (e.g. MULTI_NODE_MULTI_WRITER, Kubernetes: ReadWriteMany)")
	default:
		return fmt.Errorf("access mode %v is not known to this driver", c.GetAccessMode().GetMode())
	}
}

// checkCapabilities checks a request's list of capabilities; what is
// the name of the list in error messages.
func checkCapabilities(caps []*csi.VolumeCapability, what string) error {
	if len(caps) == 0 {
		return fmt.Errorf("%s is empty; give at least one (a mount access type and an access mode)", what)
	}
	for _, c := range caps {
		if err := checkCapability(c); err != nil {
			return err
		}
	}
	return nil
}

// readOnlyMode reports whether an access mode only reads.
func readOnlyMode(m csi.VolumeCapability_AccessMode_Mode) bool {
	return m == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY ||
		m == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
}

// hasFlag reports whether a mount capability lists a mount flag.
func hasFlag(c *csi.VolumeCapability, flag string) bool {
	for _, f := range c.GetMount().GetMountFlags() {
		if f == flag {
			return true
		}
	}
	return false
}
