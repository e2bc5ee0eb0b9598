package otlp

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"google.golang.org/protobuf/encoding/protowire"
)

// What a collector answers (the OTLP/HTTP specification): on success an
// ExportTraceServiceResponse, whose partial_success (1) says how many spans
// it rejected (rejected_spans, 1) and why (error_message, 2); on failure a
// google.rpc.Status, whose message (2) says why. Both are read only as far
// as those fields, from at most maxResponse bytes.

// maxResponse bounds what is read of an answer.
const maxResponse = 64 << 10

// PartialError is an export the collector took only part of: it rejected
// Rejected spans (it counted the others), saying Message.
type PartialError struct {
	Rejected int64
	Message  string
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("the collector rejected %d spans of the export: %s", e.Rejected, printable(e.Message))
}

var errMalformed = errors.New("malformed protobuf")

// partialSuccess reads an ExportTraceServiceResponse: nil when the
// collector took every span.
func partialSuccess(b []byte) (*PartialError, error) {
	ps, err := field(b, 1, protowire.BytesType)
	if err != nil || ps == nil {
		return nil, err
	}
	var pe PartialError
	for len(ps) > 0 {
		num, typ, n := protowire.ConsumeTag(ps)
		if n < 0 {
			return nil, errMalformed
		}
		ps = ps[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(ps)
			if n < 0 {
				return nil, errMalformed
			}
			pe.Rejected, ps = int64(v), ps[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(ps)
			if n < 0 {
				return nil, errMalformed
			}
			pe.Message, ps = string(v), ps[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, ps)
			if n < 0 {
				return nil, errMalformed
			}
			ps = ps[n:]
		}
	}
	if pe.Rejected == 0 && pe.Message == "" {
		return nil, nil
	}
	return &pe, nil
}

// statusMessage is the message of a google.rpc.Status, "" when there is
// none or b is not one.
func statusMessage(b []byte) string {
	m, err := field(b, 2, protowire.BytesType)
	if err != nil {
		return ""
	}
	return string(m)
}

// field returns the last value of the length-delimited field num of the
// message b (nil when it has none), skipping the others.
func field(b []byte, num protowire.Number, typ protowire.Type) ([]byte, error) {
	var out []byte
	for len(b) > 0 {
		n, t, k := protowire.ConsumeTag(b)
		if k < 0 {
			return nil, errMalformed
		}
		b = b[k:]
		if n == num && t == typ {
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return nil, errMalformed
			}
			out, b = v, b[k:]
			continue
		}
		k = protowire.ConsumeFieldValue(n, t, b)
		if k < 0 {
			return nil, errMalformed
		}
		b = b[k:]
	}
	return out, nil
}

// printable is what a collector said, for a log line: at most 200
// characters, anything but printable ones replaced.
func printable(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i >= 200 {
			b.WriteString("…")
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
