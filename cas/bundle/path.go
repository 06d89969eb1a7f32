package bundle

import (
	"fmt"
	"io/fs"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkPath accepts a relative, slash-separated member path that extracts
// safely on any platform: not empty, not absolute, no "." or ".." or empty
// element, no backslash, colon or control character, valid UTF-8.
func checkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("path longer than %d bytes", maxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("path %q is not valid UTF-8", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute path %q", p)
	case strings.ContainsAny(p, `\:`):
		return fmt.Errorf("path %q contains a backslash or colon", p)
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return fmt.Errorf("path %q contains a control character", p)
	case p == "." || !fs.ValidPath(p):
		return fmt.Errorf("path %q is not a clean relative path (no \".\", \"..\" or empty elements)", p)
	}
	return nil
}

// checkTree rejects a path that is also a directory of another (so "a" and
// "a/b" cannot both be files). sorted holds every path, sorted.
func checkTree(sorted []string) error {
	set := make(map[string]bool, len(sorted))
	for _, p := range sorted {
		set[p] = true
	}
	for _, p := range sorted {
		for i := range len(p) {
			if p[i] == '/' && set[p[:i]] {
				return fmt.Errorf("%q is both a file and the directory of %q", p[:i], p)
			}
		}
	}
	return nil
}
