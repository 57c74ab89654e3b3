// Package csidriver is Handoff's Container Storage Interface driver: the
// Identity, Controller and Node services that provision store volumes
// (one bucket each) and publish them into pods as the store's FUSE mount.
package csidriver
