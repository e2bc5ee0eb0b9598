package imagetest

import (
	"encoding/json"
	"strconv"
)

// jsonString is v as JSON, for podman's exec-form flags (--entrypoint,
// --health-cmd).
func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func itoa(n int) string { return strconv.Itoa(n) }
