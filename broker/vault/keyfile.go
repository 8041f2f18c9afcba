package vault

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The master key file holds one line per master key version, "<version>
// <64 hex digits>"; lines starting with '#' are comments. The highest
// version is the current key; the others are retired keys kept until
// Rewrap has moved every data key off them. The file must not be readable
// by group or others.
const keyFileHeader = "# Steward vault master keys: <version> <hex key>. Keep secret and back up:\n# losing this file loses every customer's vault.\n"

// LoadOrCreateKeyFile reads the master keys from path, creating the file
// (mode 0600, and its directory 0700) with one fresh version-1 key if it
// does not exist. It returns a Config holding the keys; the caller sets
// the rest. Only cmd/ calls it: libraries take a Config.
func LoadOrCreateKeyFile(path string) (Config, error) {
	c, err := readKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return c, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Config{}, fmt.Errorf("vault key file: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return Config{}, err
	}
	// O_EXCL: if another process created it meanwhile, use theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readKeyFile(path)
	}
	if err != nil {
		return Config{}, fmt.Errorf("vault key file: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s%d %s\n", keyFileHeader, DefaultKeyVersion, hex.EncodeToString(key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return Config{}, fmt.Errorf("vault key file: %w", err)
	}
	return readKeyFile(path)
}

// RotateKeyFile adds a new master key version to the key file at path and
// returns the Config with it as the current key. Restart with it, then run
// Service.Rewrap; once that has finished the older lines may be removed.
func RotateKeyFile(path string) (Config, error) {
	c, err := readKeyFile(path)
	if err != nil {
		return c, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return Config{}, err
	}
	b = fmt.Appendf(b, "%d %s\n", c.KeyVersion+1, hex.EncodeToString(key))
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return Config{}, fmt.Errorf("vault key file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return Config{}, fmt.Errorf("vault key file: %w", err)
	}
	return readKeyFile(path)
}

func readKeyFile(path string) (Config, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Config{}, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return Config{}, fmt.Errorf("vault key file %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	keys := map[int][]byte{}
	cur := 0
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		vs, hx, ok := strings.Cut(line, " ")
		v, err := strconv.Atoi(vs)
		key, herr := hex.DecodeString(strings.TrimSpace(hx))
		if !ok || err != nil || v <= 0 || herr != nil || len(key) != KeySize {
			return Config{}, fmt.Errorf("vault key file %s line %d: want \"<version> <%d hex digits>\"", path, i+1, 2*KeySize)
		}
		if _, dup := keys[v]; dup {
			return Config{}, fmt.Errorf("vault key file %s line %d: version %d appears twice", path, i+1, v)
		}
		keys[v] = key
		cur = max(cur, v)
	}
	if cur == 0 {
		return Config{}, fmt.Errorf("vault key file %s holds no key", path)
	}
	c := Config{MasterKey: keys[cur], KeyVersion: cur}
	delete(keys, cur)
	if len(keys) > 0 {
		c.RetiredKeys = keys
	}
	return c, nil
}
