package vrrp

// DropReason says why a received advertisement was not acted upon. Every drop
// is counted per reason in Counters.Drops.
type DropReason uint8

// Drop reasons. NumDropReasons sizes Counters.Drops.
const (
	DropNone          DropReason = iota // accepted
	DropTTL                             // IPv4 TTL or IPv6 hop limit is not 255
	DropChecksum                        // bad checksum
	DropVersion                         // not VRRP version 2 or 3, or not the version configured
	DropType                            // not an advertisement
	DropTruncated                       // shorter than its header, address list or v2 auth data
	DropVRID                            // VRID 0 or another virtual router's
	DropInterval                        // zero interval, or a v2 interval other than ours
	DropAddrList                        // address list is none of those we accept and the sender is not the owner
	DropAuth                            // v2 auth type other than 0 (none)
	DropFamily                          // addresses of another (or mixed) IP family, or v2 over IPv6
	DropOwn                             // sent from our own primary address (our own advert looped back)
	DropUnknownSource                   // a valid advert for our virtual router from a source outside Config.Sources
	DropHandover                        // from the master we just took over from in a planned handover (see TakeOverFrom)
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropNone:      "none",
	DropTTL:       "ttl",
	DropChecksum:  "checksum",
	DropVersion:   "version",
	DropType:      "type",
	DropTruncated: "truncated",
	DropVRID:      "vrid",
	DropInterval:  "interval",
	DropAddrList:  "addr_list",
	DropAuth:      "auth",
	DropFamily:    "family",
	DropOwn:       "own",

	DropUnknownSource: "unknown_source",
	DropHandover:      "handover",
}

// String returns a snake_case label fit for a Prometheus label value.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}
