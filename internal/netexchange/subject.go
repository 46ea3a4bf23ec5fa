package netexchange

import (
	"fmt"
	"strconv"
	"strings"
)

// Subject is the data subject of the channel from producer subtask from to
// consumer subtask to of an edge: "<prefix>.<edge>.<from>.<to>". prefix may
// hold dots (for example "sluice.<job>.<attempt>"); edge is one token.
func Subject(prefix, edge string, from, to int) string {
	return prefix + "." + edge + "." + strconv.Itoa(from) + "." + strconv.Itoa(to)
}

// CreditSubject is the subject on which the receiver of the data subject
// grants credit to its sender: "<data>.credit".
func CreditSubject(data string) string { return data + ".credit" }

// checkSubject refuses what core NATS would not deliver as one literal
// subject: empty tokens, wildcards and white space.
func checkSubject(s string) error {
	if s == "" {
		return fmt.Errorf("netexchange: empty subject")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return fmt.Errorf("netexchange: subject %q is not a literal NATS subject (empty token, wildcard or white space)", s)
		}
	}
	return nil
}
