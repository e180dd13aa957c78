package policystore

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Sources other than the directory (etcd) hand the store whole documents by
// key. Each document becomes an entry beside the directory's files, named
// SOURCE:KEY, and goes through exactly what a file goes through: the same
// parse, checks, duplicate-name and rule-cap refusals, and last good version
// kept in force when a new one is rejected. A source's key must contain a
// "/" (etcd keys start with one), which a file name in the directory never
// does, so the two can never collide, and a rescan or the directory's
// removal leaves a source's entries alone.

// isSourceEntry reports whether an entry name is another source's document.
func isSourceEntry(name string) bool { return strings.Contains(name, "/") }

func entryName(source, key string) string { return source + ":" + key }

// readDoc is what the store holds of a source's document, as a read of a
// file would find it.
func (s *Store) readDoc(name string) readResult {
	data, ok := s.docs[name]
	if !ok {
		return readResult{missing: true}
	}
	if len(data) > maxFileBytes {
		return readResult{err: fmt.Errorf("%s: document is %d bytes; the limit is %d", name, len(data), maxFileBytes), whole: true}
	}
	return readResult{data: data, whole: true}
}

// Update takes documents of source: docs maps a key to its content, or to
// nil for a deleted key. With full, docs is everything the source holds and
// every other key of it is removed. A batch is compiled and published once,
// so a hundred keys changed at one revision make one new RuleSet. change
// says why, for the log.
func (s *Store) Update(source string, docs map[string][]byte, full bool, change string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	seen := map[string]bool{}
	for key, data := range docs {
		n := entryName(source, key)
		seen[n] = true
		names = append(names, n)
		if data == nil {
			delete(s.docs, n)
		} else {
			s.docs[n] = data
		}
	}
	if full {
		prefix := source + ":"
		for n := range s.docs {
			if strings.HasPrefix(n, prefix) && !seen[n] {
				delete(s.docs, n)
				seen[n] = true
				names = append(names, n)
			}
		}
		for n := range s.files {
			if strings.HasPrefix(n, prefix) && !seen[n] && isSourceEntry(n) {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	if s.reload(names, time.Now()) {
		s.commit(change)
	}
}

// Documents returns the content behind the policies in force from source,
// by key: for each key, the last version that was accepted (what a cache
// must keep for the host to enforce the same after a restart).
func (s *Store) Documents(source string) map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := source + ":"
	out := map[string][]byte{}
	for n, st := range s.files {
		if strings.HasPrefix(n, prefix) && isSourceEntry(n) && st.goodDoc != nil {
			out[strings.TrimPrefix(n, prefix)] = st.goodDoc
		}
	}
	return out
}
