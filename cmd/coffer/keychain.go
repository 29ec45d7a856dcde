package main

import (
	"errors"

	"github.com/zalando/go-keyring"
)

// keychain is the OS keychain's three operations. systemKeychain is go-keyring's (the
// Secret Service on Linux, Keychain on macOS, Credential Manager on Windows); builds for
// tests swap in a stand-in (keychain_testbuild.go).
type keychain interface {
	Get(service, user string) (string, error)
	Set(service, user, secret string) error
	Delete(service, user string) error
}

type osKeychain struct{}

func (osKeychain) Get(service, user string) (string, error) { return keyring.Get(service, user) }
func (osKeychain) Set(service, user, secret string) error   { return keyring.Set(service, user, secret) }
func (osKeychain) Delete(service, user string) error        { return keyring.Delete(service, user) }

var systemKeychain keychain = osKeychain{}

// isNotFound says the keychain has no such item.
func isNotFound(err error) bool { return errors.Is(err, keyring.ErrNotFound) }
