package imagetest

import (
	"net"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mtlsproxy/payrails-mtls-proxy/deploy/deploytest/internal/repo"
)

// composeService is the part of a docker-compose service the tests run.
type composeService struct {
	Image           string            `yaml:"image"`
	Entrypoint      []string          `yaml:"entrypoint"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Volumes         []string          `yaml:"volumes"`
	ReadOnly        bool              `yaml:"read_only"`
	CapDrop         []string          `yaml:"cap_drop"`
	SecurityOpt     []string          `yaml:"security_opt"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	NetworkMode     string            `yaml:"network_mode"`
	Healthcheck     struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
}

// compose is deploy/docker-compose.yml: the sidecar and the application
// that shares its network namespace.
type compose struct {
	Services map[string]composeService `yaml:"services"`
}

const composeFile = "deploy/docker-compose.yml"

func readCompose(t *testing.T) (proxy, app composeService) {
	t.Helper()
	var c compose
	if err := yaml.Unmarshal(repo.Read(t, composeFile), &c); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	proxy, ok := c.Services["payrails-mtls-proxy"]
	if !ok {
		t.Fatalf("%s has no service payrails-mtls-proxy", composeFile)
	}
	for _, s := range c.Services {
		if s.NetworkMode == "service:payrails-mtls-proxy" {
			return proxy, s
		}
	}
	t.Fatalf(`%s has no service with network_mode "service:payrails-mtls-proxy"`, composeFile)
	return
}

// runFlags turns a compose service's settings into podman run flags: the
// ones a user's `docker compose up` applies. env is the service's
// environment after the test's substitutions; volumes maps each host path
// of the file (./certs) to the test's folder.
func (s composeService) runFlags(t *testing.T, env map[string]string, volumes map[string]string) []string {
	t.Helper()
	var flags []string
	if s.ReadOnly {
		flags = append(flags, "--read-only")
	}
	for _, c := range s.CapDrop {
		flags = append(flags, "--cap-drop", c)
	}
	for _, o := range s.SecurityOpt {
		// compose writes no-new-privileges:true, as docker does; podman takes the bare name.
		flags = append(flags, "--security-opt", strings.TrimSuffix(o, ":true"))
	}
	if s.StopGracePeriod != "" {
		d, err := time.ParseDuration(s.StopGracePeriod)
		if err != nil {
			t.Fatalf("%s: stop_grace_period %q: %v", composeFile, s.StopGracePeriod, err)
		}
		flags = append(flags, "--stop-timeout", strings.TrimSuffix(d.Round(time.Second).String(), "s"))
	}
	for _, v := range s.Volumes {
		host, rest, _ := strings.Cut(v, ":")
		local, ok := volumes[host]
		if !ok {
			t.Fatalf("%s: volume %q: the test has no folder for %s", composeFile, v, host)
		}
		flags = append(flags, "--volume", local+":"+rest)
	}
	for k, v := range env {
		flags = append(flags, "--env", k+"="+v)
	}
	if h := s.Healthcheck; len(h.Test) > 0 {
		// compose's ["CMD", argv...] is podman's JSON argv (podman 4.3 takes a leading
		// "CMD" as part of the command); ["CMD-SHELL", line] is its plain string.
		var test string
		switch h.Test[0] {
		case "CMD":
			test, _ = jsonString(h.Test[1:])
		case "CMD-SHELL":
			test = strings.Join(h.Test[1:], " ")
		default:
			t.Fatalf("%s: healthcheck test %q: want CMD or CMD-SHELL first", composeFile, h.Test)
		}
		flags = append(flags, "--health-cmd", test, "--health-interval", h.Interval, "--health-timeout", h.Timeout,
			"--health-retries", itoa(h.Retries), "--health-start-period", h.StartPeriod)
	}
	if len(s.Entrypoint) > 0 {
		ep, _ := jsonString(s.Entrypoint)
		flags = append(flags, "--entrypoint", ep)
	}
	return flags
}

// withPort returns the HOST:PORT address addr with its port replaced by
// port: the test keeps each listener's host from the file but takes free
// ports, since with --network host the machine's ports are shared.
func withPort(t *testing.T, addr string, port string) string {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q is not HOST:PORT: %v", composeFile, addr, err)
	}
	return net.JoinHostPort(host, port)
}
