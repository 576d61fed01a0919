package connect

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/mitostar/mitostar/internal/testbed"
)

// The shared test users (internal/testbed) and the roles these tests
// give them.
const (
	userAlice = "mtalice" // sudo and doas with a password; sudo requires a tty
	userBob   = "mtbob"   // sudo and doas without a password
	userCarol = "mtcarol" // a .bashrc that prints noise (only for these tests' connections)
)

var (
	passAlice = testbed.Passwords[userAlice]
	passBob   = testbed.Passwords[userBob]
)

// setupUsers makes sure the test users exist and installs this test's
// sudo and doas rules (removed when it ends).
func setupUsers(t *testing.T) {
	t.Helper()
	testbed.Users(t)
	testbed.Sudoers(t,
		"Defaults:"+userAlice+" requiretty",
		userAlice+" ALL=(ALL:ALL) ALL",
		userBob+" ALL=(ALL:ALL) NOPASSWD: ALL")
	testbed.Doas(t, "permit "+userAlice+" as root", "permit nopass "+userBob+" as root")
	testbed.Require(t, "su")
}

func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	testbed.RequireRoot(t, tools...)
}

// sshd is the testbed's server, which also accepts MTC_NOISE from the
// client (see TestSSHLoginNoise).
type sshd struct{ *testbed.SSHServer }

func startSSHD(t *testing.T) *sshd {
	t.Helper()
	setupUsers(t)
	return &sshd{testbed.SSHD(t, "AcceptEnv MTC_NOISE")}
}

// kwargs returns ssh keywords for user with the test key and known hosts.
func (s *sshd) kwargs(user string, extra ...any) map[string]any {
	kw := map[string]any{
		"hostname": s.Host, "port": int64(s.Port), "username": user,
		"identity_file": s.IdentityFile,
		"ssh_args":      []any{"-o", "UserKnownHostsFile=" + s.KnownHosts},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		kw[extra[i].(string)] = extra[i+1]
	}
	return kw
}

// liveProcessesOf lists the pids (not zombies) running an executable
// whose path is exe.
func liveProcessesOf(exe string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || strings.TrimSuffix(target, " (deleted)") != exe {
			continue
		}
		if testbed.Alive(p) {
			pids = append(pids, p)
		}
	}
	return pids
}
