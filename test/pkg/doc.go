// Package pkg tests havip's .deb and .rpm packages as `make package` builds
// them: lintian on each .deb, the .rpm inspected with rpm -qp against the
// package layout, and the amd64 .deb installed, upgraded, removed and purged
// in a fresh Debian root made by debootstrap (cached between runs).
//
// The tests need root, dpkg, lintian, rpm and debootstrap (`make deps`
// installs them). They fail when any is missing; -short leaves them out.
package pkg
