// Package levenshtein computes the edit distance that the "did you mean"
// suggestions of config (misspelt keys) and certs (misspelt country names)
// rank by. It is a leaf: it imports nothing of this module, so both can use
// it without importing each other.
package levenshtein
