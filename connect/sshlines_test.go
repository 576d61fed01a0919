package connect

import (
	"regexp"
	"testing"
)

// The regular expressions the matchers of sshlines.go replace.
var sshLineRegexps = []struct {
	name  string
	re    *regexp.Regexp
	match func(string) bool
}{
	{"password prompt", regexp.MustCompile(`(?i)password[^\n]*:\s*$`), isPasswordPrompt},
	{"host key request", regexp.MustCompile(`(?i)are you sure you want to continue connecting \(yes/no(?:/\[fingerprint\])?\)\?`), isHostKeyRequest},
	{"host key failure", regexp.MustCompile(`(?i)host key verification failed\.`), isHostKeyFailure},
	{"permission denied", regexp.MustCompile(`(?i)^(?:[^@]+@[^:]+: )?Permission denied`), isPermissionDenied},
	{"debug line", regexp.MustCompile(`^debug[123]:`), isSSHDebugLine},
}

var sshLineSamples = []string{
	"", ":", "password:", "Password: ", "root@127.0.0.1's password: ", "root@host's password:\n",
	"Enter passphrase for key '/root/.ssh/id': ", "password\n:", "PASSWORD for alice:  \t\r\n", "my password is: x",
	"Password:x", "password ::", "pass word:", "(alice@host) Password:", "Password for alice@host:\n\n",
	"The authenticity of host 'h (1.2.3.4)' can't be established.\nAre you sure you want to continue connecting (yes/no)? ",
	"Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
	"ARE YOU SURE YOU WANT TO CONTINUE CONNECTING (YES/NO)?", "Are you sure you want to continue connecting (yes/no/maybe)?",
	"Host key verification failed.", "host key verification failed", "xx HOST KEY VERIFICATION FAILED. yy",
	"Permission denied (publickey,password).", "permission denied", "root@127.0.0.1: Permission denied (publickey).",
	"@host: Permission denied", "user@: Permission denied", "a@b@c: Permission denied", "a@b:c: Permission denied",
	"a@b: permission DENIED", "a@b:Permission denied", " Permission denied", "a@b: Permission denie",
	"user@host:  Permission denied", "debug1: Reading configuration data", "debug4: x", "debug2:", "debug3", "Debug1: x",
	"warning: debug1: x", "Pässword:", "password\u00e9:", "ünïcödé@höst: Permission denied",
}

func TestSSHLineMatchersAgreeWithRegexps(t *testing.T) {
	for _, p := range sshLineRegexps {
		for _, s := range sshLineSamples {
			if want, got := p.re.MatchString(s), p.match(s); got != want {
				t.Errorf("%s on %q: got %v, the regexp says %v", p.name, s, got, want)
			}
		}
	}
}

func FuzzSSHLineMatchers(f *testing.F) {
	for _, s := range sshLineSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range sshLineRegexps {
			if want, got := p.re.MatchString(s), p.match(s); got != want {
				t.Fatalf("%s on %q: got %v, the regexp says %v", p.name, s, got, want)
			}
		}
	})
}
