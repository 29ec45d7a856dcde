package localkey

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/internal/crypto"
)

// maxFileSize is far above a base64 key plus whitespace; it stops a misconfigured path (a log
// file, a device) from being read whole into memory.
const maxFileSize = 4 << 10

// LoadOrCreate reads the key file at path, or creates it with a new random key on first start.
// A file readable or writable by group or others is refused rather than silently fixed: the
// key may already have been copied, and the operator should know.
//
// Creation uses O_EXCL, so two processes starting at once never overwrite each other's key; the
// loser loads the winner's file. If the loser reads before the winner has finished writing it
// fails with a parse error and can simply be restarted.
func LoadOrCreate(path string) (w *Wrapper, created bool, err error) {
	w, err = Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return w, false, err
	}
	w, err = create(path)
	if errors.Is(err, fs.ErrExist) {
		w, err = Load(path)
		return w, false, err
	}
	return w, err == nil, err
}

// Load reads an existing key file; a missing file is fs.ErrNotExist.
func Load(path string) (*Wrapper, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("localkey: open key file: %w", err)
	}
	defer f.Close()

	// Stat the open file, not the path, so the mode checked is the mode of what is read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("localkey: stat key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("localkey: key file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("localkey: key file %s has mode %04o, which lets other users read or change it; run chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("localkey: read key file %s: %w", path, err)
	}
	defer clear(data)
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("localkey: key file %s is too large to be a key", path)
	}
	w, err := FromBase64(string(data))
	if err != nil {
		return nil, fmt.Errorf("localkey: key file %s: %w", path, err)
	}
	return w, nil
}

func create(path string) (*Wrapper, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localkey: create key directory: %w", err)
	}
	kek := make([]byte, crypto.KeySize)
	defer clear(kek)
	if _, err := rand.Read(kek); err != nil {
		return nil, fmt.Errorf("localkey: generate key: %w", err)
	}
	w, err := New(kek)
	if err != nil {
		return nil, err
	}
	encoded := make([]byte, base64.StdEncoding.EncodedLen(len(kek))+1)
	defer clear(encoded)
	base64.StdEncoding.Encode(encoded, kek)
	encoded[len(encoded)-1] = '\n'

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("localkey: create key file: %w", err)
	}
	if err := writeSynced(f, encoded); err != nil {
		// Nothing has been wrapped under this key yet, so removing it loses nothing and lets
		// the next start try again instead of tripping over a truncated file.
		_ = os.Remove(path)
		return nil, fmt.Errorf("localkey: write key file: %w", err)
	}
	// The key must survive a crash once DEKs are wrapped under it, so make its name durable
	// too. Not every platform can sync a directory, so failure here is not fatal.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return w, nil
}

func writeSynced(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
