//go:build coffer_testkeychain

package main

import (
	"encoding/json"
	"errors"
	"os"
	"strings"

	"github.com/zalando/go-keyring"
)

// Builds with the coffer_testkeychain tag (tests only; never a release) replace the OS
// keychain with go-keyring's mock provider. The mock lives in one process, and the tests run
// coffer as several, so its items are also saved to the JSON file COFFER_TEST_KEYCHAIN names
// and loaded back on start. COFFER_TEST_KEYCHAIN_FAIL=all makes every operation fail (no
// keychain at all: the probe fails); =token makes only writes of real tokens fail (the probe
// passes, the write after sign-in does not).
func init() {
	path := os.Getenv("COFFER_TEST_KEYCHAIN")
	if path == "" {
		return
	}
	k := &testKeychain{path: path, items: map[string]string{}, fail: os.Getenv("COFFER_TEST_KEYCHAIN_FAIL")}
	if k.fail == "all" {
		keyring.MockInitWithError(errors.New("org.freedesktop.secrets was not provided by any .service files"))
	} else {
		keyring.MockInit()
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &k.items)
	}
	for key, v := range k.items {
		service, user, _ := strings.Cut(key, "\x00")
		_ = keyring.Set(service, user, v)
	}
	systemKeychain = k
}

type testKeychain struct {
	path  string
	fail  string
	items map[string]string
}

func (k *testKeychain) Get(service, user string) (string, error) { return keyring.Get(service, user) }

func (k *testKeychain) Set(service, user, secret string) error {
	if k.fail == "token" && !strings.HasPrefix(user, "probe-") {
		return errors.New("the keychain is locked")
	}
	if err := keyring.Set(service, user, secret); err != nil {
		return err
	}
	if !strings.HasPrefix(user, "probe-") {
		k.items[service+"\x00"+user] = secret
		return k.save()
	}
	return nil
}

func (k *testKeychain) Delete(service, user string) error {
	if err := keyring.Delete(service, user); err != nil {
		return err
	}
	delete(k.items, service+"\x00"+user)
	return k.save()
}

func (k *testKeychain) save() error {
	b, err := json.Marshal(k.items)
	if err != nil {
		return err
	}
	return os.WriteFile(k.path, b, 0o600)
}
