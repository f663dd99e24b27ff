// Package schema holds the JSON Schema of the messages nlbridge publishes,
// for consumers and for tests that check what the encoders write.
package schema

import _ "embed"

// ID is the $id of EventV1; compilers that are given EventV1 as a resource
// should register it under this URL.
const ID = "https://nlbridge.dev/schema/event.v1.json"

// EventV1 is the JSON Schema (draft 2020-12) of version 1 of the event
// message, whose "v" field is 1. It describes the JSON encoding; the CBOR
// encoding carries the same document. Callers must not modify it.
//
//go:embed event.v1.json
var EventV1 []byte
