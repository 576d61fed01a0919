package ops

import (
	"reflect"
	"testing"
)

// The parsers of package manager output, on output as the real programs
// print it (LC_ALL=C).
func TestPackageParsers(t *testing.T) {
	cases := []struct {
		name  string
		parse func(proc, []string) (map[string]bool, error)
		p     proc
		names []string
		want  map[string]bool
	}{
		{"dpkg-query", parseDpkgQuery, proc{rc: 1, stdout: "hello\tinstalled\nsl\tconfig-files\nvim\tnot-installed\n",
			stderr: "dpkg-query: no packages found matching nope\n"},
			[]string{"hello", "sl", "vim", "nope"}, map[string]bool{"hello": true}},
		{"apt-cache policy", parseAptPolicy, proc{stdout: `hello:
  Installed: 2.10-3
  Candidate: 2.10-3
  Version table:
 *** 2.10-3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
curl:
  Installed: 7.88.1-10+deb12u5
  Candidate: 7.88.1-10+deb12u12
  Version table:
     7.88.1-10+deb12u12 500
sl:
  Installed: (none)
  Candidate: 5.02-1+b1
`}, []string{"hello", "curl", "sl"}, map[string]bool{"curl": true}},
		{"dnf check-update", parseCheckUpdate, proc{rc: 100, stdout: "\nbash.x86_64    5.2.26-3.fc40    updates\n" +
			"kernel-core.x86_64 6.9.4-200.fc40 updates\nObsoleting Packages\nfoo.noarch 1-1 updates\n"},
			[]string{"bash", "kernel-core", "zsh"}, map[string]bool{"bash": true, "kernel-core": true}},
		{"zypper list-updates", parseZypperUpdates, proc{stdout: "S | Repository | Name | Current Version | Available Version | Arch\n" +
			"--+------------+------+-----------------+-------------------+-------\nv | repo-oss   | curl | 8.0-1           | 8.6-1             | x86_64\n"},
			[]string{"curl", "vim"}, map[string]bool{"curl": true}},
		{"apk version", parseApkVersion, proc{stdout: "Installed:                                Available:\n" +
			"busybox-1.36.1-r5                       < 1.36.1-r7\nbusybox-extras-1.36.1-r5 < 1.36.1-r7\n"},
			[]string{"busybox"}, map[string]bool{"busybox": true}},
		{"rpm -q", parseNameLines, proc{rc: 1, stdout: "bash\npackage zsh is not installed\n"},
			[]string{"bash", "zsh"}, map[string]bool{"bash": true}},
		{"pacman -Qu", parseFirstField, proc{stdout: "curl 8.5.0-1 -> 8.6.0-1\n"}, []string{"curl", "vim"}, map[string]bool{"curl": true}},
	}
	for _, c := range cases {
		got, err := c.parse(c.p, c.names)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	for name, parse := range map[string]func(proc, []string) (map[string]bool, error){
		"apt-cache policy": parseAptPolicy, "check-update": parseCheckUpdate,
		"zypper": parseZypperUpdates, "apk": parseApkVersion,
	} {
		if _, err := parse(proc{rc: 1, stderr: "E: broken"}, []string{"a"}); err == nil {
			t.Errorf("%s: a failing command was read as an answer", name)
		}
	}
}
