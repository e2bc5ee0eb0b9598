package proxy

// SetBcryptCompare replaces how a compares bcrypt hashes, for tests that
// count, time or hold the comparisons. Call it before serving.
func SetBcryptCompare(a *AuthFile, f func(hash, password []byte) error) { a.gate.compare = f }

// BcryptConcurrency is how many bcrypt comparisons a runs at once.
func BcryptConcurrency(a *AuthFile) int { return cap(a.gate.slots) }
