package imagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// The images under test and the application image of the sidecar test:
// what scripts/image.sh (and --pkcs11) builds and makes (--bases local).
const (
	envImage           = "PAYRAILS_PROXY_IMAGE"
	defaultImage       = "localhost/payrails-mtls-proxy:dev"
	envPKCS11Image     = "PAYRAILS_PROXY_PKCS11_IMAGE"
	defaultPKCS11Image = "localhost/payrails-mtls-proxy:dev-pkcs11" // scripts/image.sh --pkcs11
	envAppImage        = "PAYRAILS_PROXY_APP_IMAGE"
	defaultAppImage    = "localhost/payrails-mtls-proxy-base/debian:bookworm" // has sh and curl
)

// podman runs podman commands for one test.
type podman struct {
	t   *testing.T
	bin string
}

// newPodman finds podman, or skips (fails under PAYRAILS_PROXY_REQUIRE_INTEROP=1).
func newPodman(t *testing.T) podman {
	t.Helper()
	return podman{t: t, bin: interop.Tool(t, "podman")}
}

// run runs podman with args and returns its standard output; a failure
// returns the error with standard error in it.
func (p podman) run(args ...string) (string, error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// runExit runs podman with args to the end and returns its output
// (standard output and error) and exit code; a podman that cannot run fails
// the test.
func (p podman) runExit(args ...string) (string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.bin, args...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		p.t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	if exit != nil {
		return string(out), exit.ExitCode()
	}
	return string(out), 0
}

// must is run that fails the test on an error.
func (p podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// image returns the name of an image in podman's storage (env, else def),
// or skips (fails under PAYRAILS_PROXY_REQUIRE_INTEROP=1) when it is not
// there, saying how to build it (scripts/image.sh makes each default).
func (p podman) image(env, def string) string {
	p.t.Helper()
	name := def
	if v := os.Getenv(env); v != "" {
		name = v
	}
	if _, err := p.run("image", "exists", name); err != nil {
		build := "scripts/image.sh"
		if def == defaultPKCS11Image {
			build += " --pkcs11"
		}
		msg := fmt.Sprintf("image %s is not in podman's storage; build it with %s (or set %s)", name, build, env)
		if interop.Required() {
			p.t.Fatalf("%s (%s=1)", msg, interop.EnvRequire)
		}
		p.t.Skip(msg)
	}
	return name
}

// imageInfo is what podman image inspect says of an image.
type imageInfo struct {
	Size   int64
	Config struct {
		User       string
		Env        []string
		Entrypoint []string
		Cmd        []string
		Labels     map[string]string
		StopSignal string
		Volumes    map[string]struct{}
	}
	HealthCheck *struct {
		Test        []string
		Interval    time.Duration
		Timeout     time.Duration
		StartPeriod time.Duration
		Retries     int
	}
}

func (p podman) inspectImage(name string) imageInfo {
	p.t.Helper()
	var infos []imageInfo
	if err := json.Unmarshal([]byte(p.must("image", "inspect", name)), &infos); err != nil || len(infos) != 1 {
		p.t.Fatalf("podman image inspect %s: %v (%d images)", name, err, len(infos))
	}
	return infos[0]
}

// containerInfo is what podman inspect says of a container.
type containerInfo struct {
	State struct {
		Status   string
		Pid      int
		ExitCode int
		// Docker's name, and podman 4's own (which podman inspect fills).
		Health      struct{ Status string }
		Healthcheck struct{ Status string }
	}
	RestartCount int
	HostConfig   struct{ ReadonlyRootfs bool }
}

// healthStatus is the container's health as podman inspect reports it.
func (c containerInfo) healthStatus() string {
	if c.State.Healthcheck.Status != "" {
		return c.State.Healthcheck.Status
	}
	return c.State.Health.Status
}

func (p podman) inspect(name string) containerInfo {
	p.t.Helper()
	var infos []containerInfo
	if err := json.Unmarshal([]byte(p.must("inspect", "--type", "container", name)), &infos); err != nil || len(infos) != 1 {
		p.t.Fatalf("podman inspect %s: %v (%d containers)", name, err, len(infos))
	}
	return infos[0]
}

// logs returns a container's output, for failure messages.
func (p podman) logs(name string) string {
	out, err := exec.Command(p.bin, "logs", name).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(podman logs %s: %v)", name, err)
	}
	return string(out)
}

// copyOut copies the file path out of image into the test's temp dir and
// returns where it is.
func (p podman) copyOut(image, path string) string {
	p.t.Helper()
	name := strings.TrimSpace(p.must("create", image))
	defer p.remove(name)
	dst := filepath.Join(p.t.TempDir(), filepath.Base(path))
	p.must("cp", name+":"+path, dst)
	return dst
}

// remove removes a container, whatever its state.
func (p podman) remove(name string) {
	_ = exec.Command(p.bin, "rm", "--force", "--time", "0", name).Run()
}
