package jetstream

import (
	"fmt"
	"strings"
)

// Subjects are dot-separated tokens. In a filter, "*" matches exactly one
// token and ">" (last token only) matches one or more tokens.

// validFilter reports whether f is a well-formed subject or subject filter.
func validFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty subject")
	}
	toks := strings.Split(f, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("subject %q has an empty token", f)
		case t == ">" && i != len(toks)-1:
			return fmt.Errorf("subject %q has \">\" before its last token", f)
		case strings.ContainsAny(t, " \t\r\n"):
			return fmt.Errorf("subject %q contains white space", f)
		case len(t) > 1 && strings.ContainsAny(t, "*>"):
			return fmt.Errorf("subject %q has a wildcard inside token %q", f, t)
		}
	}
	return nil
}

// subjectsIntersect reports whether some literal subject matches both
// filters a and b (each a subject, possibly with wildcards).
func subjectsIntersect(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(at) && i == len(bt):
			return true
		case i < len(at) && at[i] == ">":
			return i < len(bt) // ">" needs at least one token
		case i < len(bt) && bt[i] == ">":
			return i < len(at)
		case i == len(at) || i == len(bt):
			return false
		case at[i] != "*" && bt[i] != "*" && at[i] != bt[i]:
			return false
		}
	}
}

// subjectMatches reports whether the literal subject s matches filter f.
func subjectMatches(f, s string) bool { return subjectsIntersect(f, s) }
