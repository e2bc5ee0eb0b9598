package otlp

import (
	"math"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/encoding/protowire"
)

// Append-style protobuf writing, for encode.go: every helper appends one
// field to b and returns it, allocating only when b must grow. Fields are
// written in field-number order and left out when they hold their zero
// value, as proto3 has it.

// openField begins the length-delimited field num whose length is not
// known yet: the tag, one byte kept for the length, and the offset at
// which the content begins, for closeField.
func openField(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return append(b, 0), len(b) + 1
}

// zeros are what closeField grows b by before it moves a message up.
var zeros [10]byte // a varint takes at most 10 bytes

// closeField ends the field openField began at start: it writes the
// content's length into the byte kept for it, moving the content up when
// the length takes more than one byte (a message of 128 bytes or more).
func closeField(b []byte, start int) []byte {
	n := len(b) - start
	if n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	b = append(b, zeros[:k-1]...)
	copy(b[start+k-1:], b[start:start+n])
	protowire.AppendVarint(b[:start-1], uint64(n))
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

// count is a dropped-count field's value: a uint32, clamped.
func count(n int) uint64 {
	return uint64(min(max(n, 0), math.MaxUint32))
}

// appendKeyValues appends each of attrs as an opentelemetry.proto.common.v1
// KeyValue in field num: key (1) and value (2).
func appendKeyValues(b []byte, num protowire.Number, attrs []attribute.KeyValue) []byte {
	for _, kv := range attrs {
		b = appendKeyValue(b, num, kv)
	}
	return b
}

// appendSet is appendKeyValues for the attributes of a set.
func appendSet(b []byte, num protowire.Number, set *attribute.Set) []byte {
	for it := set.Iter(); it.Next(); {
		b = appendKeyValue(b, num, it.Attribute())
	}
	return b
}

func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	b, start := openField(b, num)
	b = appendString(b, 1, string(kv.Key))
	b = appendAnyValue(b, 2, kv.Value)
	return closeField(b, start)
}

// appendAnyValue appends v as an AnyValue in field num, as the SDK's own
// exporter maps it: string (1), bool (2), int (3), double (4), array (5),
// key-value list (6), bytes (7); an empty value is an empty AnyValue.
func appendAnyValue(b []byte, num protowire.Number, v attribute.Value) []byte {
	b, start := openField(b, num)
	switch v.Type() {
	case attribute.STRING:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, v.AsString())
	case attribute.BOOL:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.BYTESLICE:
		b = appendBytes(b, 7, v.AsByteSlice())
	case attribute.MAP:
		var list int
		b, list = openField(b, 6)
		b = appendKeyValues(b, 1, v.AsMap())
		b = closeField(b, list)
	case attribute.STRINGSLICE, attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.SLICE:
		b = appendArray(b, v)
	case attribute.EMPTY:
	default:
		b = appendString(b, 1, "INVALID")
	}
	return closeField(b, start)
}

// appendArray appends a slice value as an ArrayValue (5) of AnyValues (1).
func appendArray(b []byte, v attribute.Value) []byte {
	b, start := openField(b, 5)
	switch v.Type() {
	case attribute.STRINGSLICE:
		for _, s := range v.AsStringSlice() {
			b = appendAnyValue(b, 1, attribute.StringValue(s))
		}
	case attribute.BOOLSLICE:
		for _, x := range v.AsBoolSlice() {
			b = appendAnyValue(b, 1, attribute.BoolValue(x))
		}
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			b = appendAnyValue(b, 1, attribute.Int64Value(x))
		}
	case attribute.FLOAT64SLICE:
		for _, x := range v.AsFloat64Slice() {
			b = appendAnyValue(b, 1, attribute.Float64Value(x))
		}
	case attribute.SLICE:
		for _, x := range v.AsSlice() {
			b = appendAnyValue(b, 1, x)
		}
	}
	return closeField(b, start)
}
