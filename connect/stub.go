package connect

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"strings"
)

// The bootstrap runs in two stages; docs/protocol.md ("Bootstrap stub")
// describes the exchange.
//
// Stage 1 is the command line itself: `sh -c STAGE1`. It is one line
// without single quotes or "!", so that any login shell (sh, bash, csh,
// fish) passes it through `sh -c '...'` untouched. When the target's
// `uname -sm` matches the master's platform and a binary with the
// master's sha256 is cached in one of the per-user cache directories, it
// lists the modules cached beside it (their sha256s, see
// ObserveCachedModules) as
//
//	mitostar:NONCE:have SHA256...
//
// and execs that binary at once: the master writes nothing before the
// handshake. Otherwise it prints
//
//	mitostar:NONCE:stage2 UID SYSNAME MACHINE
//
// reads a length line and evaluates that many bytes of stage 2.
//
// Stage 2 (sent only then) looks for the binary the master chose for
// this platform, picks the first cache directory that is owned by the
// user, writable and not mounted noexec, takes a lock so that concurrent
// connections ship the binary once, asks for it with
//
//	mitostar:NONCE:send GZIP(0|1)
//
// reads a length line and that many bytes (gzip'd when GZIP is 1),
// verifies size and sha256, renames it into place and execs it. With no
// usable directory on Linux it creates a memfd through python3 or perl
// and execs the binary from there. Failures are reported as
//
//	mitostar:NONCE:error TEXT
//
// Cache directories, in order (U is the numeric user id):
//
//	${XDG_CACHE_HOME:-$HOME/.cache}/mitostar/SHA256/mitostar
//	${TMPDIR:-/tmp}/mitostar.U/SHA256/mitostar
//	/tmp/mitostar.U/SHA256/mitostar
//	/dev/shm/mitostar.U/SHA256/mitostar
const (
	stubPrefix = "mitostar:" // + nonce + ":" + verb
	cacheDirs  = `"${XDG_CACHE_HOME:-$HOME/.cache}/mitostar" "${TMPDIR:-/tmp}/mitostar.$U" /tmp/mitostar.$U /dev/shm/mitostar.$U`
	// findCached execs $R/$H/mitostar from the first directory R of the
	// loop that holds it, is owned by this user and is executable (the
	// "ok" probe beside the binary fails on a noexec mount).
	findCached = findCachedIf + execCached
	// findCachedIf and execCached are findCached's halves, between which
	// stage 1 lists the cached modules.
	findCachedIf = `f=$R/$H/mitostar;if [ -O "$R" ]&&[ -O "$f" ]&&[ -x "$f" ]&&"$R/$H/ok" 2>/dev/null;then `
	execCached   = `MITOSTAR_ROLE=child;export MITOSTAR_ROLE;exec "$f";fi`
)

// ModuleCacheDir is where a cached binary's child keeps the modules it
// received, beside the binary: CACHE/SHA256/m/MODULE-SHA256.
const ModuleCacheDir = "m"

// listModules prints the module cache's file names, with the working
// directory restored for the child.
const listModules = `P=$PWD;cd "$R/$H/` + ModuleCacheDir + `" 2>/dev/null&&echo mitostar:$N:have *;cd "$P";`

const stage1 = `H=%s;N=%s;U=` + "`id -u`" + `;S=` + "`uname -sm`" + `;` +
	`case $S in %s) for R in ` + cacheDirs + `;do ` + findCachedIf + listModules + execCached + `;done;;esac;` +
	`echo mitostar:$N:stage2 $U $S;read L&&eval "` + "`dd bs=1 count=$L 2>/dev/null`" + `"`

// stage2 is evaluated by stage 1 after the master set H (the sha256 of the
// binary for this platform) and Q (its size in bytes). The positional
// parameters are the cache directories.
const stage2 = `set -- ` + cacheDirs + `
for R;do ` + findCached + `;done
command -v gzip >/dev/null 2>&1&&Z=1||Z=0
# W receives the binary into $1, verifies it, renames it to $2 (if set) and execs it.
W='echo "mitostar:$N:send $Z";read L||exit 1
if head -c 0 </dev/null >/dev/null 2>&1;then c="head -c $L";else c="dd bs=1 count=$L";fi
if [ "$Z" = 1 ];then $c 2>/dev/null|gzip -dc >"$1";else $c 2>/dev/null >"$1";fi
s=` + "`wc -c <\"$1\"`" + `;k=` + "`sha256sum <\"$1\" 2>/dev/null||shasum -a 256 <\"$1\" 2>/dev/null||sha256 -q <\"$1\" 2>/dev/null||openssl dgst -sha256 -r <\"$1\" 2>/dev/null`" + `;k=${k%% *}
if [ "$s" -ne "$Q" ]||{ [ -n "$k" ]&&[ "$k" != "$H" ];};then
echo "mitostar:$N:error the binary written to $1 is corrupt: $s bytes (want $Q), sha256 ${k:-unchecked} (want $H)";rm -f "$1" 2>/dev/null;[ -z "$2" ]||rm -rf "${2%/*}/lock";exit 1;fi
chmod 700 "$1";if [ -n "$2" ];then mv -f "$1" "$2"||exit 1;rm -rf "${2%/*}/lock";set -- "$2";fi
MITOSTAR_ROLE=child;export MITOSTAR_ROLE;exec "$1"'
D=
for R;do
mkdir -p "$R/$H" 2>/dev/null;chmod 700 "$R" 2>/dev/null
if [ -O "$R" ]&&[ -w "$R/$H" ];then
t=$R/$H/ok.$$;echo 'exit 0' >"$t" 2>/dev/null&&chmod 700 "$t"&&"$t" 2>/dev/null&&mv -f "$t" "$R/$H/ok"&&{ D=$R/$H;break;};rm -f "$t"
fi;done
if [ -n "$D" ];then
if mkdir "$D/lock" 2>/dev/null;then [ -x "$D/mitostar" ]&&{ rm -rf "$D/lock";MITOSTAR_ROLE=child;export MITOSTAR_ROLE;exec "$D/mitostar";};echo $$ >"$D/lock/pid"
else i=0
while [ $i -lt 150 ]&&[ -d "$D/lock" ];do
[ -x "$D/mitostar" ]&&{ MITOSTAR_ROLE=child;export MITOSTAR_ROLE;exec "$D/mitostar";}
p=` + "`cat \"$D/lock/pid\" 2>/dev/null`" + `;if [ $i -gt 5 ]&&{ [ -z "$p" ]||! kill -0 "$p" 2>/dev/null;};then break;fi
sleep 0.2 2>/dev/null||sleep 1;i=$((i+1));done
[ -x "$D/mitostar" ]&&{ MITOSTAR_ROLE=child;export MITOSTAR_ROLE;exec "$D/mitostar";}
fi
set -- "$D/mitostar.$$" "$D/mitostar";eval "$W"
fi
export N Z H Q
case $S in "Linux x86_64") n=319;; "Linux aarch64"|"Linux arm64") n=279;; *) n=;; esac
if [ -n "$n" ]&&python3 -c 'import os;os.memfd_create' >/dev/null 2>&1;then
exec python3 -c 'import os,sys;f=os.memfd_create("mitostar",0);os.set_inheritable(f,True);os.execvp("sh",["sh","-c",sys.argv[1],"sh","/proc/self/fd/%d"%f])' "$W";fi
if [ -n "$n" ]&&perl -e 'exit 0' >/dev/null 2>&1;then
exec perl -e '$n="mitostar";$f=syscall($ARGV[1]+0,$n,0);$f>=0 or die "memfd_create: $!\n";exec "sh","-c",$ARGV[0],"sh","/proc/self/fd/$f"' "$W" "$n";fi
echo "mitostar:$N:error no usable cache directory (each must be owned by $U, writable and not mounted noexec): $*; and no memfd fallback (Linux with python3 or perl)";exit 1
`

// unamePatterns are the `uname -sm` outputs of each platform, as a sh
// case pattern.
var unamePatterns = map[string]string{
	"linux/amd64":   `"Linux x86_64"|"Linux amd64"`,
	"linux/arm64":   `"Linux aarch64"|"Linux arm64"`,
	"darwin/amd64":  `"Darwin x86_64"`,
	"darwin/arm64":  `"Darwin arm64"`,
	"freebsd/amd64": `"FreeBSD amd64"|"FreeBSD x86_64"`,
	"freebsd/arm64": `"FreeBSD arm64"|"FreeBSD aarch64"`,
}

// platformOf maps `uname -s` and `uname -m` to Go's GOOS and GOARCH.
func platformOf(sysname, machine string) (goos, goarch string, err error) {
	switch sysname {
	case "Linux":
		goos = "linux"
	case "Darwin":
		goos = "darwin"
	case "FreeBSD":
		goos = "freebsd"
	default:
		return "", "", fmt.Errorf("unsupported target operating system %q (uname -s)", sysname)
	}
	switch machine {
	case "x86_64", "amd64":
		goarch = "amd64"
	case "aarch64", "arm64":
		goarch = "arm64"
	default:
		return "", "", fmt.Errorf("unsupported target architecture %q (uname -m) on %s", machine, sysname)
	}
	return goos, goarch, nil
}

// A Stub is the shell program that bootstraps one connection. Each has
// its own nonce, so that nothing the target prints on its own (a motd,
// a noisy .profile) can be mistaken for the stub's messages.
type Stub struct {
	nonce string
	self  *binary
}

// NewStub prepares the stub of a new connection from this process's own
// executable (its sha256 is computed once per process).
func NewStub() (*Stub, error) {
	self, err := selfBinary()
	if err != nil {
		return nil, err
	}
	if _, err := self.info(); err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("bootstrap nonce: %w", err)
	}
	return &Stub{nonce: hex.EncodeToString(b[:]), self: self}, nil
}

// Script is the stage-1 program, for `sh -c`.
func (s *Stub) Script() string {
	info, _ := s.self.info() // loaded by NewStub
	pattern, ok := unamePatterns[runtime.GOOS+"/"+runtime.GOARCH]
	if !ok {
		pattern = `"-"` // never matches: always ask the master
	}
	return fmt.Sprintf(stage1, info.hash, s.nonce, pattern)
}

// Argv is the stub as an argument vector: sh -c SCRIPT.
func (s *Stub) Argv() []string { return []string{"sh", "-c", s.Script()} }

// Command is the stub as one command line for a remote login shell
// (ssh, su -c): sh -c 'SCRIPT'. The script holds no single quote.
func (s *Stub) Command() string { return "sh -c '" + s.Script() + "'" }

// dollarFreeArgv is Argv for `sudo -i`, which hands the command to the
// target user's login shell with every character escaped but "$": the
// script travels with $, quotes, backquotes and backslashes as printf
// octal escapes and is eval'd.
func (s *Stub) dollarFreeArgv() []string {
	r := strings.NewReplacer(`\`, `\134`, `%`, `%%`, `$`, `\044`, "`", `\140`, `"`, `\042`, `'`, `\047`)
	return []string{"sh", "-c", "eval \"`printf '" + r.Replace(s.Script()) + "'`\""}
}

// marker is the prefix of this stub's own lines.
func (s *Stub) marker() string { return stubPrefix + s.nonce + ":" }

// stage2Script is what the master sends after stage 1 asked for it: the
// binary's identity, then the stage-2 program.
func stage2Script(hash string, size int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "H=%s;Q=%d\n", hash, size)
	for _, line := range strings.Split(stage2, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}
