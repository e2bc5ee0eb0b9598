// Package answer says what an upstream's answers mean, for the upstream
// client and the inbound proxy alike: the TLS alerts a server sends about
// the client's certificate (with what each means for a Payrails merchant),
// an edge's HTML refusal page in front of the API (the request never
// reached it), Payrails' JSON error shape (its code and id, read from a
// body that may be cut short) and which answers Payrails' error catalogue
// says to retry with the same idempotency key. It reads; it never sends.
package answer
