// Package imagetest holds only tests: it runs the image scripts/image.sh
// builds (localhost/payrails-mtls-proxy:dev) with podman as the Dockerfile,
// deploy/docker-compose.yml and docs/deployment.md tell users to, against a
// stand-in for the Payrails API on loopback that requires the client
// certificate: read-only, every capability dropped, no new privileges, as
// uid 65532, the certificate folder mounted read-only. It checks the image's
// configuration against the Dockerfile, the healthcheck, a request carrying
// the client certificate, a rotation by dropping files into the folder, a
// drain on SIGTERM and the sidecar pattern (a second container in the
// first's network namespace). Without podman or the image it skips, or
// fails under PAYRAILS_PROXY_REQUIRE_INTEROP=1.
package imagetest
