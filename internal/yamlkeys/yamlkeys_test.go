package yamlkeys

import (
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestCollect(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("a: {b: 1, c: [ {d: 2}, {e: 3} ]}\nf: x\n"), &n); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	Collect(&n, "", got)
	want := map[string]bool{"a": true, "a.b": true, "a.c": true, "a.c[].d": true, "a.c[].e": true, "f": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Collect = %v, want %v", got, want)
	}
}
