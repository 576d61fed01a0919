package fanout

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/inventory"
)

func plansOf(t *testing.T, ini string, opts Options) map[string]*plan {
	t.Helper()
	inv, err := inventory.Parse("test.ini", []byte(ini))
	if err != nil {
		t.Fatal(err)
	}
	opts.Inventory = inv
	s := &Session{opts: opts}
	out := map[string]*plan{}
	for _, h := range inv.Hosts() {
		p, err := s.planFor(h)
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		out[h.Name] = p
	}
	return out
}

func TestPlanFromVars(t *testing.T) {
	become := "from -K"
	plans := plansOf(t, `
web1 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=deploy ansible_ssh_private_key_file=/k ansible_ssh_common_args="-o A=1 -o 'B=2 3'" mitostar_connect_timeout=4
web2 ansible_become=yes ansible_become_method=doas ansible_become_user=app ansible_become_exe=/usr/bin/doas
web3 ansible_become=true ansible_become_password=pw ansible_become_flags="-H -E"
c1 ansible_connection=community.docker.docker ansible_user=root mitostar_docker_path=/d
l1 ansible_connection=mitogen_local
r1 mitostar_via=web1 mitostar_multiplex=no ansible_port="2200"
n1 ansible_become=1 mitostar_become_password=1234 ansible_password=5678
s1 mitostar_ssh_transport=native
s2 mitostar_transport=native
s3 ansible_connection=local mitostar_ssh_transport=native
`, Options{BecomePassword: &become})
	// The ssh transport, by its own variable or as a keyword of ssh; a
	// host that is not reached over ssh ignores it.
	for _, h := range []string{"s1", "s2"} {
		if p := plans[h]; p.login.method != "ssh" || p.login.opts.Kwargs["transport"] != "native" {
			t.Errorf("%s: %+v", h, p.login)
		}
	}
	if p := plans["s3"]; p.login.method != "local" || p.login.opts.Kwargs["transport"] != nil {
		t.Errorf("s3: %+v", p.login)
	}
	// Passwords that read as numbers are strings (a type error would print them).
	if n1 := plans["n1"]; n1.become.opts.Kwargs["password"] != "1234" || n1.login.opts.Kwargs["password"] != "5678" {
		t.Errorf("n1: %+v / %+v", n1.login, n1.become)
	}
	web1 := plans["web1"]
	wantKw := map[string]any{"hostname": "10.0.0.1", "port": int64(2222), "username": "deploy", "identity_file": "/k",
		"ssh_args": []any{"-o", "A=1", "-o", "B=2 3"}}
	if web1.login.method != "ssh" || !reflect.DeepEqual(web1.login.opts.Kwargs, wantKw) || web1.login.opts.Name != "web1" ||
		web1.login.opts.ConnectTimeout != 4*time.Second || web1.become != nil {
		t.Errorf("web1: %+v", web1.login)
	}
	web2 := plans["web2"]
	if web2.become == nil || web2.become.method != "doas" || !reflect.DeepEqual(web2.become.opts.Kwargs,
		map[string]any{"username": "app", "doas_path": "/usr/bin/doas", "password": "from -K"}) ||
		web2.become.opts.Name != "web2" || web2.login.opts.Name != "web2/ssh" {
		t.Errorf("web2: %+v / %+v", web2.login, web2.become)
	}
	web3 := plans["web3"]
	if web3.become.method != "sudo" || web3.become.opts.Kwargs["password"] != "pw" ||
		!reflect.DeepEqual(web3.become.opts.Kwargs["sudo_args"], []any{"-H", "-E"}) {
		t.Errorf("web3: %+v", web3.become)
	}
	if c := plans["c1"]; c.login.method != "docker" || !reflect.DeepEqual(c.login.opts.Kwargs,
		map[string]any{"container": "c1", "username": "root", "docker_path": "/d"}) {
		t.Errorf("c1: %+v", c.login)
	}
	if l := plans["l1"]; l.login.method != "local" || len(l.login.opts.Kwargs) != 0 {
		t.Errorf("l1: %+v", l.login)
	}
	if r := plans["r1"]; r.via != "web1" || !r.noMux || r.login.opts.Kwargs["port"] != int64(2200) {
		t.Errorf("r1: %+v", r)
	}
}

func TestPlanErrors(t *testing.T) {
	for src, want := range map[string]string{
		"h ansible_connection=winrm":                     `ansible_connection "winrm" is not a connection method`,
		"h ansible_become=1 ansible_become_method=runas": `ansible_become_method "runas"`,
		"h ansible_port=abc":                             "ansible_port: want an integer",
		"h mitostar_connect_timeout=-1":                  "mitostar_connect_timeout: want a positive number",
		"h mitostar_name=x":                              "mitostar_name cannot be set",
	} {
		inv, err := inventory.Parse("t.ini", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		s := &Session{opts: Options{Inventory: inv}}
		if _, err := s.planFor(inv.Host("h")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", src, err, want)
		}
	}
}

func TestRecordHidesPasswords(t *testing.T) {
	inv, _ := inventory.Parse("t.ini", []byte("h ansible_password=a ansible_become_pass=b ansible_become_password=c x=1\n"))
	r := recordOf(inv.Host("h"))
	if !reflect.DeepEqual(r.Vars, map[string]any{"x": int64(1)}) || r.Name != "h" || !reflect.DeepEqual(r.Groups, []string{"ungrouped"}) {
		t.Errorf("record %+v", r)
	}
}

func TestBatches(t *testing.T) {
	cases := []struct {
		n      int
		serial []string
		want   [][2]int
	}{
		{5, nil, [][2]int{{0, 5}}},
		{5, []string{"2"}, [][2]int{{0, 2}, {2, 4}, {4, 5}}},
		{10, []string{"30%"}, [][2]int{{0, 3}, {3, 6}, {6, 9}, {9, 10}}},
		{7, []string{"1", "50%"}, [][2]int{{0, 1}, {1, 4}, {4, 7}}},
		{3, []string{"1%"}, [][2]int{{0, 1}, {1, 2}, {2, 3}}},
		{0, []string{"2"}, nil},
	}
	for _, c := range cases {
		if got := batches(c.n, c.serial); !reflect.DeepEqual(got, c.want) {
			t.Errorf("batches(%d, %q) = %v, want %v", c.n, c.serial, got, c.want)
		}
	}
	for _, bad := range []starlark.Value{starlark.MakeInt(0), starlark.String("x%"), starlark.String("150%"), starlark.NewList(nil), starlark.Float(2)} {
		if _, err := serialOf(bad); err == nil {
			t.Errorf("serialOf(%s) is not an error", bad)
		}
	}
}

func TestLinesAndRecap(t *testing.T) {
	var out bytes.Buffer
	l := NewLines(&out, false)
	l.Begin("each deploy", []string{"a", "b"})
	l.HostDone(Event{Host: "a", Phase: "each", Status: StatusChanged, Elapsed: 1500 * time.Millisecond})
	l.HostDone(Event{Host: "b", Phase: "each", Status: StatusFailed, Elapsed: time.Second,
		Err: &builtins.Error{Kind: "CallError", Message: "boom\nsecond line"}})
	want := "== each deploy (2 hosts)\n[a] changed 1.50s\n[b] FAILED 1.00s: CallError: boom / second line\n"
	if out.String() != want {
		t.Errorf("lines %q, want %q", out.String(), want)
	}

	var js bytes.Buffer
	s := &Session{stats: map[string]*hostStat{}, opts: Options{JSON: &js}}
	s.record("web1", func(st *hostStat) { st.ok, st.changed, st.elapsed = 2, 1, 1230*time.Millisecond })
	s.record("db9", func(st *hostStat) { st.unreachable, st.errors = true, []string{"StreamError: refused"} })
	var recap bytes.Buffer
	s.Recap(&recap, false)
	wantRecap := "RECAP\n" +
		"host    ok  changed  failed  unreachable  skipped   elapsed\n" +
		"web1     2        1       0            0        0     1.23s\n" +
		"db9      0        0       0            1        0     0.00s\n" +
		"failures:\n  db9: StreamError: refused\n"
	if recap.String() != wantRecap {
		t.Errorf("recap\n%s\nwant\n%s", recap.String(), wantRecap)
	}
	if s.ExitStatus() != 4 {
		t.Errorf("exit status %d, want 4", s.ExitStatus())
	}
	s.record("web1", func(st *hostStat) { st.failed++ })
	if s.ExitStatus() != 3 {
		t.Errorf("exit status %d, want 3", s.ExitStatus())
	}
	s.WriteRecapJSON()
	if !strings.Contains(js.String(), `"db9":{"changed":0,"elapsed":0,"errors":["StreamError: refused"]`) {
		t.Errorf("JSON recap %s", js.String())
	}
}

func TestLiveBlockFitsTheScreen(t *testing.T) {
	var out bytes.Buffer
	l := &Live{out: &out, size: func() (int, int) { return 40, 6 }, paint: painter(false), now: time.Now,
		tick: time.Hour, running: map[string]time.Time{}, partial: map[io.Writer][]byte{}}
	var hosts []string
	for i := 0; i < 20; i++ {
		hosts = append(hosts, "host-with-a-rather-long-name-"+string(rune('a'+i)))
	}
	l.Begin("each x", hosts)
	for _, h := range hosts {
		l.HostStart(h)
	}
	block := l.block(5)
	if len(block) != 5 || !strings.HasPrefix(block[4], "  … and 17 more") {
		t.Errorf("block %q", block)
	}
	l.End()
	if !strings.Contains(out.String(), "\x1b[J") {
		t.Errorf("End did not erase the block: %q", out.String())
	}
}

func TestTruncate(t *testing.T) {
	red := statusSGR[StatusFailed]
	for _, c := range []struct {
		in    string
		width int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 5, "abcd…"},
		// colour sequences count for nothing and are kept after the cut
		{"ab" + red + "cdefgh" + sgrReset + " ij", 5, "ab" + red + "cd…" + sgrReset},
		{red + "ok" + sgrReset, 2, red + "ok" + sgrReset},
		// wide characters take two columns; one that does not fit goes whole
		{"漢字漢字", 5, "漢字…"},
		{"漢字漢字", 4, "漢…"},
		{"e\u0301e\u0301e\u0301", 3, "e\u0301e\u0301e\u0301"},
		{"abc", 0, ""},
		{"", 0, ""},
	} {
		if got := truncate(c.in, c.width); got != c.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", c.in, c.width, got, c.want)
		}
		if got := displayWidth(truncate(c.in, c.width)); got > c.width {
			t.Errorf("truncate(%q, %d) is %d columns wide", c.in, c.width, got)
		}
	}
	if got := cursorPreviousLine(3); got != "\x1b[3F" {
		t.Errorf("cursorPreviousLine(3) = %q", got)
	}
}
