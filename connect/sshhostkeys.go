package connect

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/mitostar/mitostar/core"
)

// hostKeys checks a server's host key for the native transport against
// the known_hosts files, with OpenSSH's StrictHostKeyChecking rules:
//
//	yes, ask    an unknown or changed key fails (check_host_keys="enforce")
//	accept-new  an unknown key is recorded, a changed one fails ("accept")
//	no          an unknown key is recorded, a changed one is used, but
//	            passwords are then not sent ("ignore")
//
// A revoked key (@revoked) always fails.
type hostKeys struct {
	mode   string   // the StrictHostKeyChecking value
	name   string   // host:port, the name keys are recorded under
	files  []string // the known_hosts files that exist, the user's first
	record string   // where a new key is written: the first user file ("" for none)
	hash   bool     // HashKnownHosts
	warn   func(string)
	check  ssh.HostKeyCallback
	known  []ssh.PublicKey // the keys known for name, in file order

	mu      sync.Mutex
	changed bool   // the key differs from the known one (mode "no")
	failure string // why the key was refused, for the error's detail
}

// newHostKeys loads the known_hosts files of c.
// warn reports what ssh would print as a warning (a key that could not
// be recorded).
func newHostKeys(c *sshConfig, warn func(string)) (*hostKeys, error) {
	h := &hostKeys{mode: c.strictHostKeyChecking, name: c.knownHostsName(), hash: c.hashKnownHosts, warn: warn}
	for i, f := range append(slices.Clone(c.userKnownHosts), c.globalKnownHosts...) {
		p := c.expandPath(f)
		if i == 0 && i < len(c.userKnownHosts) && p != os.DevNull {
			h.record = p
		}
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			h.files = append(h.files, p)
		}
	}
	if len(h.files) == 0 {
		return h, nil
	}
	check, err := knownhosts.New(h.files...)
	if err != nil {
		return nil, fmt.Errorf("reading known hosts (%s): %w", strings.Join(h.files, ", "), err)
	}
	h.check = check
	// The keys known for the host, found by asking about a key that
	// cannot be among them.
	var ke *knownhosts.KeyError
	if errors.As(check(h.name, probeAddr, probeKey()), &ke) {
		for _, k := range ke.Want {
			h.known = append(h.known, k.Key)
		}
	}
	return h, nil
}

var (
	probeAddr = &net.TCPAddr{IP: net.IPv4zero}
	// probeKey is a key no known_hosts file holds, made when first
	// needed (not in every process of the binary).
	probeKey = sync.OnceValue(func() ssh.PublicKey {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			panic(err)
		}
		k, err := ssh.NewPublicKey(pub)
		if err != nil {
			panic(err)
		}
		return k
	})
)

// algorithms is the host key algorithm preference for the handshake:
// those of the keys already known for the host first, then the rest of
// x/crypto's list. Without this the server would present the key of
// x/crypto's first choice (ed25519) while known_hosts holds, say, its
// ECDSA key, and knownhosts would report a mismatch for a host whose key
// never changed. nil: no key is known, x/crypto's order applies.
func (h *hostKeys) algorithms() []string {
	if len(h.known) == 0 {
		return nil
	}
	supported := ssh.SupportedAlgorithms().HostKeys
	var first []string
	for _, k := range h.known {
		for _, a := range keyAlgorithms(k.Type()) {
			if slices.Contains(supported, a) && !slices.Contains(first, a) {
				first = append(first, a)
			}
		}
	}
	for _, a := range supported {
		if !slices.Contains(first, a) {
			first = append(first, a)
		}
	}
	return first
}

// keyAlgorithms are the handshake algorithms that present a key of the
// given type: RSA keys sign with SHA-2 or, last, SHA-1.
func keyAlgorithms(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

// callback is the handshake's HostKeyCallback.
func (h *hostKeys) callback(_ string, remote net.Addr, key ssh.PublicKey) error {
	var err error = &knownhosts.KeyError{}
	if h.check != nil {
		err = h.check(h.name, remote, key)
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return h.refuse(fmt.Sprintf("the host key of %s (%s) is revoked in %s", h.name, fingerprint(key), re.Revoked.Filename))
	case !errors.As(err, &ke):
		return h.refuse(fmt.Sprintf("checking the host key of %s: %v", h.name, err))
	case len(ke.Want) == 0: // unknown
		if h.mode != "accept-new" && h.mode != "no" {
			return h.refuse(fmt.Sprintf("no host key is known for %s (it offered %s); known hosts: %s", h.name, fingerprint(key), h.describeFiles()))
		}
		return h.add(key)
	default: // changed
		w := ke.Want[0]
		detail := fmt.Sprintf("the host key of %s has changed: it offered %s, %s:%d has %s", h.name, fingerprint(key), w.Filename, w.Line, fingerprint(w.Key))
		if h.mode != "no" {
			return h.refuse(detail)
		}
		h.mu.Lock()
		h.changed, h.failure = true, detail
		h.mu.Unlock()
		return nil
	}
}

func (h *hostKeys) refuse(detail string) error {
	h.mu.Lock()
	h.failure = detail
	h.mu.Unlock()
	return &core.HostKeyError{Msg: sshHostKeyFailed}
}

// keyChanged reports whether the host's key was used although it
// differs from the known one, and why.
func (h *hostKeys) keyChanged() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed, h.failure
}

// detail says why a key was refused.
func (h *hostKeys) detail() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failure
}

func (h *hostKeys) describeFiles() string {
	if len(h.files) == 0 {
		return "none of the files exists"
	}
	return strings.Join(h.files, ", ")
}

// knownHostsMu serialises this process's additions to known_hosts files.
var knownHostsMu sync.Mutex

// add records a new host key in the user's known_hosts file, as ssh
// does (hashed when HashKnownHosts is set). A file that cannot be
// written does not stop the connection: ssh only warns too.
func (h *hostKeys) add(key ssh.PublicKey) error {
	if h.record == "" {
		return nil
	}
	name := knownhosts.Normalize(h.name)
	if h.hash {
		name = knownhosts.HashHostname(name)
	}
	line := name + " " + key.Type() + " " + base64.StdEncoding.EncodeToString(key.Marshal()) + "\n"
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	err := os.MkdirAll(filepath.Dir(h.record), 0o700)
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(h.record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	}
	if err == nil {
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil && h.warn != nil {
		h.warn(fmt.Sprintf("ssh: failed to add the host key of %s (%s) to the list of known hosts: %v", h.name, fingerprint(key), err))
	}
	return nil
}

func fingerprint(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}
