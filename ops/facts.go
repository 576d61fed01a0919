package ops

// facts(): what a context knows about its host, gathered once per
// context from files and system calls (no program is run and nothing is
// asked of the network: fqdn comes from /etc/hosts, not DNS).

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"go.starlark.net/starlark"
	"golang.org/x/sys/unix"

	"github.com/mitostar/mitostar/builtins"
	"github.com/mitostar/mitostar/core"
)

// hostFacts is what facts() returns, before it becomes a dict.
type hostFacts struct {
	os, distro, distroVersion, kernel, arch string
	hostname, fqdn                          string
	cpus                                    int
	memoryMB                                int64 // -1: unknown
	addresses                               []string
	defaultIPv4                             string
	init, packageManager, virtualization    string
	python                                  string
	user                                    string
	uid                                     int
}

// factsCache holds one context's facts; they are gathered once.
type factsCache struct {
	once  sync.Once
	facts hostFacts
}

// caches holds each context's facts until its router closes.
var caches sync.Map // *core.Router → *factsCache

// cacheOf returns the facts cache of r's context (a fresh one for a
// thread without a router).
func cacheOf(r *core.Router) *factsCache {
	if r == nil {
		return &factsCache{}
	}
	c, loaded := caches.LoadOrStore(r, &factsCache{})
	if !loaded {
		context.AfterFunc(r.Lifetime(), func() { caches.Delete(r) })
	}
	return c.(*factsCache)
}

// facts() returns a fresh dict of this context's facts.
func opFacts(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := starlark.UnpackPositionalArgs("facts", args, kwargs, 0); err != nil {
		return nil, err
	}
	r, _ := builtins.RouterOf(thread)
	c := cacheOf(r)
	c.once.Do(func() { c.facts = gatherFacts() })
	return c.facts.dict(), nil
}

func (f *hostFacts) dict() *starlark.Dict {
	str := func(s string) starlark.Value {
		if s == "" {
			return starlark.None
		}
		return starlark.String(s)
	}
	addrs := make([]starlark.Value, len(f.addresses))
	for i, a := range f.addresses {
		addrs[i] = starlark.String(a)
	}
	var mem starlark.Value = starlark.None
	if f.memoryMB >= 0 {
		mem = starlark.MakeInt64(f.memoryMB)
	}
	d := starlark.NewDict(17)
	for _, kv := range []struct {
		k string
		v starlark.Value
	}{
		{"os", str(f.os)}, {"distro", str(f.distro)}, {"distro_version", str(f.distroVersion)},
		{"kernel", str(f.kernel)}, {"arch", str(f.arch)}, {"hostname", str(f.hostname)}, {"fqdn", str(f.fqdn)},
		{"cpus", starlark.MakeInt(f.cpus)}, {"memory_mb", mem}, {"addresses", starlark.NewList(addrs)},
		{"default_ipv4", str(f.defaultIPv4)}, {"init", str(f.init)}, {"package_manager", str(f.packageManager)},
		{"virtualization", str(f.virtualization)}, {"python", str(f.python)}, {"user", str(f.user)},
		{"uid", starlark.MakeInt(f.uid)},
	} {
		d.SetKey(starlark.String(kv.k), kv.v)
	}
	return d
}

func gatherFacts() hostFacts {
	f := hostFacts{os: runtime.GOOS, cpus: runtime.NumCPU(), uid: os.Getuid(), memoryMB: -1}
	rel := osRelease()
	f.distro, f.distroVersion = rel["ID"], rel["VERSION_ID"]
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		f.kernel, f.arch = unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:])
	}
	f.hostname, f.fqdn = hostNames()
	f.memoryMB = memoryMB()
	f.addresses, f.defaultIPv4 = addresses()
	f.init = detectInit()
	f.packageManager = detectPackageManager()
	f.virtualization = virtualization()
	for _, py := range []string{"python3", "python"} {
		if p, err := exec.LookPath(py); err == nil {
			f.python = p
			break
		}
	}
	if cur, err := user.Current(); err == nil {
		f.user = cur.Username
	} else {
		f.user = os.Getenv("USER")
	}
	return f
}

// osRelease reads /etc/os-release (or /usr/lib/os-release).
func osRelease() map[string]string {
	out := map[string]string{}
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			} else {
				v = strings.Trim(v, `'"`)
			}
			out[k] = v
		}
		break
	}
	return out
}

// hostNames returns the short host name and the fully qualified one: the
// kernel's name when it has a dot, else the first dotted name of an
// /etc/hosts line that lists the host name.
func hostNames() (short, fqdn string) {
	name, err := os.Hostname()
	if err != nil {
		return "", ""
	}
	short, _, _ = strings.Cut(name, ".")
	if strings.Contains(name, ".") {
		return short, name
	}
	fqdn = name
	data, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return short, fqdn
	}
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		names := f[1:]
		listed := false
		for _, n := range names {
			if n == name || strings.HasPrefix(n, name+".") {
				listed = true
			}
		}
		if !listed {
			continue
		}
		for _, n := range names {
			if strings.HasPrefix(n, name+".") {
				return short, n
			}
		}
	}
	return short, fqdn
}

// memoryMB reads MemTotal from /proc/meminfo (-1 where there is none).
func memoryMB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					return kb / 1024
				}
			}
		}
	}
	return -1
}

// addresses lists the IP addresses of the interfaces that are not
// loopback, and the IPv4 address of the interface of the default route.
func addresses() ([]string, string) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, ""
	}
	var all []string
	firstV4 := map[string]string{}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipnet, ok := a.(*net.IPNet)
			if !ok || ipnet.IP.IsLoopback() {
				continue
			}
			all = append(all, ipnet.IP.String())
			if ipnet.IP.To4() != nil && firstV4[ifc.Name] == "" {
				firstV4[ifc.Name] = ipnet.IP.String()
			}
		}
	}
	return all, firstV4[defaultRouteInterface()]
}

// defaultRouteInterface reads /proc/net/route for the interface of the
// IPv4 default route with the lowest metric ("" when there is none).
func defaultRouteInterface() string {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return ""
	}
	best, bestMetric := "", int64(-1)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, _ := strconv.ParseInt(f[3], 16, 64)
		metric, _ := strconv.ParseInt(f[6], 10, 64)
		if flags&1 != 0 && (bestMetric < 0 || metric < bestMetric) {
			best, bestMetric = f[0], metric
		}
	}
	return best
}

// virtualization names the container or virtual machine this runs in:
// "docker", "podman", "lxc", another container manager's name, "kvm",
// "vmware", "virtualbox", "xen", "hyperv", "vm" (some hypervisor), or
// "none".
func virtualization() string {
	if _, err := os.Stat("/.dockerenv"); err == nil {
		return "docker"
	}
	if _, err := os.Stat("/run/.containerenv"); err == nil {
		return "podman"
	}
	if env, err := os.ReadFile("/proc/1/environ"); err == nil {
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "container="); ok && v != "" {
				return v
			}
		}
	}
	if cg, err := os.ReadFile("/proc/1/cgroup"); err == nil {
		switch s := string(cg); {
		case strings.Contains(s, "/docker/"):
			return "docker"
		case strings.Contains(s, "/lxc/"), strings.Contains(s, "/lxc.payload"):
			return "lxc"
		}
	}
	vendor, _ := os.ReadFile("/sys/class/dmi/id/sys_vendor")
	product, _ := os.ReadFile("/sys/class/dmi/id/product_name")
	dmi := strings.ToLower(string(vendor) + " " + string(product))
	for _, v := range []struct{ match, name string }{
		{"qemu", "kvm"}, {"kvm", "kvm"}, {"vmware", "vmware"}, {"virtualbox", "virtualbox"},
		{"innotek", "virtualbox"}, {"xen", "xen"}, {"microsoft corporation", "hyperv"},
	} {
		if strings.Contains(dmi, v.match) {
			return v.name
		}
	}
	if cpu, err := os.ReadFile("/proc/cpuinfo"); err == nil && strings.Contains(string(cpu), " hypervisor") {
		return "vm"
	}
	return "none"
}
