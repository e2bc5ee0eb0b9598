package dockerfile

import (
	"reflect"
	"testing"
)

const sample = `# comment
ARG GO_IMAGE=golang:1.27.3-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ENV BUILD_ONLY=1
RUN echo \
  two lines
FROM ${BASE_IMAGE}
ARG VERSION=dev
LABEL a="one two" \
      b="$VERSION" c=plain
ENV X=1 \
    Y="quoted"
USER nonroot:nonroot
HEALTHCHECK --interval=30s CMD ["/bin", "health"]
ENTRYPOINT ["/bin"]
CMD ["serve"]
`

func TestParse(t *testing.T) {
	f := Parse([]byte(sample))
	if got := f.Stages(); !reflect.DeepEqual(got, []string{"--platform=${BUILDPLATFORM} golang:1.27.3-bookworm AS build", "gcr.io/distroless/static-debian12:nonroot"}) {
		t.Errorf("Stages = %q", got)
	}
	if got, want := f.Env(), map[string]string{"X": "1", "Y": "quoted"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Env = %q, want %q (the final stage only)", got, want)
	}
	if got, want := f.Labels(map[string]string{"VERSION": "1.2"}), map[string]string{"a": "one two", "b": "1.2", "c": "plain"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Labels = %q, want %q", got, want)
	}
	if got := f.Last("RUN"); got != "echo two lines" {
		t.Errorf("RUN = %q", got)
	}
	if argv, ok := ExecForm(f.Last("ENTRYPOINT")); !ok || !reflect.DeepEqual(argv, []string{"/bin"}) {
		t.Errorf("ENTRYPOINT = %q, %v", argv, ok)
	}
	if got, want := f.Stage("build").Env(), map[string]string{"BUILD_ONLY": "1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Stage(build).Env = %q, want %q", got, want)
	}
	if got := f.Stage("build").Last("USER"); got != "" {
		t.Errorf("Stage(build).Last(USER) = %q, want none (the final stage's is not the build stage's)", got)
	}
	if got := f.Stage("").Last("USER"); got != "nonroot:nonroot" {
		t.Errorf("Stage(\"\").Last(USER) = %q, want the final stage's", got)
	}
	if got := f.Stage("missing"); got != nil {
		t.Errorf("Stage(missing) = %q, want nil", got)
	}
	if _, ok := ExecForm("echo shell form"); ok {
		t.Error("the shell form decoded as exec form")
	}
}
