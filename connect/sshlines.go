package connect

import "strings"

// isPasswordPrompt reports whether ssh's output ends in a password
// prompt: "password" and, later on the same line, a colon followed by
// nothing but white space (regexp `(?i)password[^\n]*:\s*$`).
func isPasswordPrompt(s string) bool {
	t := strings.TrimRight(s, " \t\n\f\r")
	if !strings.HasSuffix(t, ":") {
		return false
	}
	line := t[strings.LastIndexByte(t, '\n')+1:]
	return containsFold(line[:len(line)-1], "password")
}

// isHostKeyRequest reports whether ssh asks to accept an unknown host key
// (`(?i)are you sure you want to continue connecting \(yes/no(?:/\[fingerprint\])?\)\?`).
func isHostKeyRequest(s string) bool {
	l := strings.ToLower(s)
	return strings.Contains(l, "are you sure you want to continue connecting (yes/no)?") ||
		strings.Contains(l, "are you sure you want to continue connecting (yes/no/[fingerprint])?")
}

// isHostKeyFailure reports ssh's refusal of a host key
// (`(?i)host key verification failed\.`).
func isHostKeyFailure(s string) bool { return containsFold(s, "host key verification failed.") }

// isPermissionDenied reports a refused login: the text starts with
// "Permission denied", maybe after "USER@HOST: "
// (`(?i)^(?:[^@]+@[^:]+: )?Permission denied`).
func isPermissionDenied(s string) bool {
	const denied = "permission denied"
	if hasPrefixFold(s, denied) {
		return true
	}
	// USER@HOST: with USER free of '@' and HOST free of ':', both non-empty.
	at := strings.IndexByte(s, '@')
	if at <= 0 {
		return false
	}
	colon := strings.IndexByte(s[at+1:], ':')
	if colon <= 0 {
		return false
	}
	rest := s[at+1+colon+1:]
	return strings.HasPrefix(rest, " ") && hasPrefixFold(rest[1:], denied)
}

// isSSHDebugLine reports a line of ssh -v output (`^debug[123]:`).
func isSSHDebugLine(s string) bool {
	return len(s) >= 7 && s[:5] == "debug" && s[5] >= '1' && s[5] <= '3' && s[6] == ':'
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
