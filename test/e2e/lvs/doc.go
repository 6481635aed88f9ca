// Package lvs holds the end-to-end tests of havip with real IPVS: DR, TUN
// and NAT through a pair of directors, inside the VM lab (the host kernel
// has no IPVS). The tests are built with the vmtest tag and run by
// vmlab/vmrun; lvs_test.go runs them from the host.
package lvs
