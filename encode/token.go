package encode

import (
	"math/bits"

	"github.com/nlbridge/nlbridge/event"
)

// token is a key or string value that messages repeat, prepared in both
// formats so that writing it is one copy.
type token struct {
	// json is the JSON string after a comma: `,"name"` for a value,
	// `,"name":` for a key. Without a comma before it, it is json[1:].
	json string
	// cbor is the CBOR text string: its head, then the bytes.
	cbor string
}

// newText prepares a string value, which must be printable ASCII without
// '"', '\\', '<', '>' or '&'.
func newText(s string) token {
	return token{
		json: `,"` + s + `"`,
		cbor: string(appendHead(nil, majorText, uint64(len(s)))) + s,
	}
}

// newKey prepares a member name, of the same kind of bytes as newText's.
func newKey(s string) token {
	t := newText(s)
	t.json += ":"
	return t
}

// The keys of the messages.
var (
	keyV            = newKey("v")
	keyType         = newKey("type")
	keyHost         = newKey("host")
	keyBoot         = newKey("boot")
	keySeq          = newKey("seq")
	keyTime         = newKey("time")
	keyDump         = newKey("dump")
	keyLink         = newKey("link")
	keyAddr         = newKey("addr")
	keyReason       = newKey("reason")
	keyLinks        = newKey("links")
	keyAddrs        = newKey("addrs")
	keyFirstSeq     = newKey("first_seq")
	keyIndex        = newKey("index")
	keyName         = newKey("name")
	keyKind         = newKey("kind")
	keyState        = newKey("state")
	keyEnabled      = newKey("enabled")
	keyRunning      = newKey("running")
	keyMTU          = newKey("mtu")
	keyMAC          = newKey("mac")
	keyMaster       = newKey("master")
	keyParent       = newKey("parent")
	keyAlias        = newKey("alias")
	keyCarrier      = newKey("carrier")
	keyFlags        = newKey("flags")
	keyIfname       = newKey("ifname")
	keyFamily       = newKey("family")
	keyAddress      = newKey("address")
	keyPeer         = newKey("peer")
	keyPrefixLen    = newKey("prefix_len")
	keyBroadcast    = newKey("broadcast")
	keyScope        = newKey("scope")
	keyLabel        = newKey("label")
	keyValidLft     = newKey("valid_lft")
	keyPreferredLft = newKey("preferred_lft")
)

// The values that come from small sets, made from the event package's
// String methods and tables. check rejects the types and families that are
// not here. Every state and scope is here, the unnamed ones as numbers.
var (
	typeText  [event.Sync + 1]token
	stateText [256]token
	scopeText [256]token
	inetText  = newText(event.Inet.String())
	inet6Text = newText(event.Inet6.String())

	// Flag names by bit number; no name means the bit is written in hex.
	linkFlagText  = flagText(event.LinkFlags, nil)
	inetFlagText  = flagText(event.AddrFlags, func(fl event.FlagName) string { return event.AddrFlagName(fl, event.Inet) })
	inet6FlagText = flagText(event.AddrFlags, func(fl event.FlagName) string { return event.AddrFlagName(fl, event.Inet6) })
)

func init() {
	for t := event.NewLink; t <= event.Sync; t++ {
		typeText[t] = newText(t.String())
	}
	for i := range 256 {
		stateText[i] = newText(event.OperState(i).String())
		scopeText[i] = newText(event.ScopeName(uint8(i)))
	}
}

// flagText indexes a table of flag names by bit number, naming each with
// name, or with its Name if name is nil. Entries that are not exactly one
// bit, of which there are none, are left out, so their bits would be
// written in hex.
func flagText(table []event.FlagName, name func(event.FlagName) string) (t [32]token) {
	for _, fl := range table {
		if bits.OnesCount32(fl.Bit) != 1 {
			continue
		}
		s := fl.Name
		if name != nil {
			s = name(fl)
		}
		t[bits.TrailingZeros32(fl.Bit)] = newText(s)
	}
	return t
}
