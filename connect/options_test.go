package connect

import (
	"context"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mitostar/mitostar/core"
)

// Every field of every typed method is a keyword its method accepts:
// with all of them set, connecting fails for what the fields point at
// (a program that is not there), never for a keyword.
func TestMethodStructsUseTheMethodsKeywords(t *testing.T) {
	r, _ := newMaster(t)
	nowhere := "/nonexistent/program"
	methods := []Method{
		SSH{Hostname: "127.0.0.1", Username: "nobody", Port: 1, SSHPath: nowhere, CheckHostKeys: "ignore", Password: "pw",
			IdentityFile: "/nonexistent/key", IdentitiesOnly: Bool(false), Compression: Bool(false), SSHArgs: []string{"-v"},
			KeepaliveInterval: Int(0), KeepaliveCount: Int(2), SSHDebugLevel: 1, Transport: "openssh"},
		Sudo{Username: "root", SudoPath: nowhere, Password: "pw", SetHome: true, PreserveEnv: true, Login: true,
			SELinuxRole: "r", SELinuxType: "t", SudoArgs: []string{"-E"}},
		Su{Username: "root", Password: "pw", SuPath: nowhere, PasswordPrompt: "Password:", IncorrectPrompts: []string{"nope"}},
		Doas{Username: "root", Password: "pw", DoasPath: nowhere, PasswordPrompt: "Password:", IncorrectPrompts: []string{"nope"}},
		Docker{Container: "c", Username: "root", DockerPath: nowhere},
		Docker{Image: "busybox", DockerPath: nowhere, RunArgs: []string{"--network", "none"}},
		Podman{Container: "c", Username: "root", PodmanPath: nowhere},
		Buildah{Container: "c", BuildahPath: nowhere},
		LXC{Container: "c", LXCAttachPath: nowhere},
		LXD{Container: "c", LXCPath: nowhere},
		Incus{Container: "c", IncusPath: nowhere},
		Jail{Container: "c", JexecPath: nowhere, Username: "root"},
		Kubectl{Pod: "p", Container: "c", KubectlPath: nowhere, KubectlArgs: []string{"-n", "x"}},
		Setns{Container: "c", Kind: "docker", Username: "root", DockerPath: nowhere, NsenterPath: nowhere},
	}
	for _, m := range methods {
		kw := m.Kwargs()
		// Every tagged field that is set is a keyword, under its tag.
		v := reflect.ValueOf(m)
		for i := range v.NumField() {
			name := v.Type().Field(i).Tag.Get("kw")
			if _, ok := kw[name]; ok != !v.Field(i).IsZero() {
				t.Errorf("%T: field %s: keyword %q given %v", m, v.Type().Field(i).Name, name, ok)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := Connect(ctx, r, m, core.ConnectOptions{ConnectTimeout: 10 * time.Second})
		cancel()
		if err == nil {
			t.Errorf("%T connected to nowhere", m)
			continue
		}
		for _, bad := range []string{"unexpected keyword", " must be "} {
			if strings.Contains(err.Error(), bad) {
				t.Errorf("%T: its keywords were refused: %v", m, err)
			}
		}
	}
	// Pointers give false and 0, which a zero value cannot.
	kw := SSH{Compression: Bool(false), KeepaliveInterval: Int(0)}.Kwargs()
	if kw["compression"] != false || kw["keepalive_interval"] != int64(0) || len(kw) != 2 {
		t.Errorf("SSH kwargs %v", kw)
	}
	if got := slices.Sorted(maps.Keys(Setns{PID: 7}.Kwargs())); !slices.Equal(got, []string{"pid"}) {
		t.Errorf("Setns{PID: 7} gives %v", got)
	}
}

// A Go program connects with typed methods as a script does with
// keywords: a local child, and an ssh context to the test sshd with its
// keepalives set.
func TestConnectTyped(t *testing.T) {
	s := startSSHD(t)
	r, _ := newMaster(t)
	ctx := testCtx(t, time.Minute)
	c, err := Connect(ctx, r, Local{RemoteName: "typed"}, core.ConnectOptions{Name: "typed"})
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := c.Call(ctx, &pid, "connecttest.pid"); err != nil || pid == os.Getpid() {
		t.Fatalf("local: pid %d, %v", pid, err)
	}
	for _, tr := range []string{"openssh", "native"} {
		m := SSH{Hostname: s.Host, Port: s.Port, Username: userBob, IdentityFile: s.IdentityFile,
			SSHArgs: []string{"-o", "UserKnownHostsFile=" + s.KnownHosts}, KeepaliveInterval: Int(5), KeepaliveCount: Int(2), Transport: tr}
		c, err := Connect(ctx, r, m, core.ConnectOptions{})
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		if uid, _ := whoami(t, ctx, c); uid != uidOf(t, userBob) {
			t.Errorf("%s: the context runs as uid %s", tr, uid)
		}
	}
}
