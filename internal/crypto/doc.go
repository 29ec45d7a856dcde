// Package crypto owns Coffer's envelope encryption: data-encryption keys (DEKs), the sealed
// value format, the additional-data encoding that binds a ciphertext to its place, the seam for
// key-encryption keys (KeyWrapper) and the bounded cache of unwrapped DEKs.
//
// The key hierarchy, outermost first:
//
//	key-encryption key (KMS or local file) > wrapped DEK (stored) > sealed values
//
// Every sealed value carries a format byte and the id of the DEK that sealed it, so values
// written under old formats and old keys stay readable while keys rotate.
//
// The package is pure: it imports no storage, HTTP or cloud SDK code, so every layer can use it
// and tests need nothing but the standard library.
package crypto
