// Package smoke holds the VM lab's own smoke test (build tag vmtest): it
// proves that a VM booted by vmlab has IPVS, that github.com/moby/ipvs can
// program it and that ipvsadm sees the result. It has no code of its own.
package smoke
