// Package layout holds the test that keeps the architecture visible in the
// tree (STYLE.md, issue 23): the inbound proxy stays small, the upstream
// client never imports it, and no file, function or type outgrows its
// concern. Test support only: nothing imports it.
package layout
