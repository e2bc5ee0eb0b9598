// Package imagetest holds only tests: it runs the images scripts/image.sh
// builds (localhost/payrails-mtls-proxy:dev, and :dev-pkcs11 with --pkcs11)
// with podman as the Dockerfile, deploy/docker-compose.yml and
// docs/deployment.md tell users to, against a stand-in for the Payrails API
// on loopback that requires the client certificate: read-only, every
// capability dropped, no new privileges, as uid 65532, the certificate
// folder mounted read-only. It checks each image's configuration against
// its Dockerfile stage and its binary's build information, the healthcheck,
// a request carrying the client certificate, a rotation by dropping files
// into the folder, a drain on SIGTERM and the sidecar pattern (a second
// container in the first's network namespace); and the -pkcs11 image
// serving with its key in a SoftHSM2 token (library, configuration and
// token folder mounted), and refusing to start, saying what to do, when
// module-path names no library. Without podman, the images or SoftHSM2 it
// skips, or fails under PAYRAILS_PROXY_REQUIRE_INTEROP=1.
package imagetest
