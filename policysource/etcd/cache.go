package etcd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// cacheFile is what the cache holds: the last good document of each key
// and the revision they were read at.
type cacheFile struct {
	Revision int64             `json:"revision"`
	Written  time.Time         `json:"written"`
	Prefix   string            `json:"prefix"`
	Docs     map[string][]byte `json:"docs"` // base64: exactly the bytes read
}

// readCache reads the cache. It is as trusted as the policy directory, so
// it is refused unless it is a regular file owned by this process's user
// (root) that no one else can write.
func readCache(path string) (*cacheFile, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file; not read", path)
	case st != nil && int(st.Uid) != os.Geteuid():
		return nil, fmt.Errorf("%s is owned by uid %d, not %d; not read (whoever can write it controls what is enforced)", path, st.Uid, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("%s has mode %04o, writable by others; not read (whoever can write it controls what is enforced)", path, fi.Mode().Perm())
	case fi.Size() > maxCacheBytes:
		return nil, fmt.Errorf("%s is %d bytes, more than %d; not read", path, fi.Size(), maxCacheBytes)
	}
	var c cacheFile
	if err := json.NewDecoder(f).Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// maxCacheBytes: the store takes at most 100,000 rules per host; a cache
// beyond this is not one we wrote.
const maxCacheBytes = 256 << 20

// writeCache writes the cache atomically with mode 0600, creating its
// directory 0700.
func writeCache(path string, c *cacheFile) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".etcd-cache-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: no such file
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
