package connect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"

	"github.com/mitostar/mitostar/core"
)

// sshAuth authenticates one native connection as OpenSSH would with the
// same configuration: public keys (the agent's, then identity files,
// whose passphrase is asked once per file), then keyboard-interactive
// and password with the password keyword. It remembers what happened,
// so that a refusal becomes the PasswordError the OpenSSH path gives.
type sshAuth struct {
	ctx          context.Context
	cfg          *sshConfig
	password     string
	havePassword bool
	keys         *hostKeys
	logf         func(format string, args ...any) // debug log

	mu           sync.Mutex
	started      bool     // the server asked for authentication
	allowed      []string // the methods the server last allowed
	passwordSent bool
	keyErr       error    // why an identity could not be used
	agentConn    net.Conn // open during the handshake
}

// clientConfig is the handshake's configuration.
func (a *sshAuth) clientConfig() *ssh.ClientConfig {
	var methods []ssh.AuthMethod
	if a.cfg.pubkeyAuth {
		methods = append(methods, ssh.PublicKeysCallback(a.signers))
	}
	if a.havePassword && a.cfg.kbdInteractive {
		methods = append(methods, ssh.KeyboardInteractive(a.challenge))
	}
	if a.havePassword && a.cfg.passwordAuth {
		methods = append(methods, ssh.PasswordCallback(a.passwordFor))
	}
	return &ssh.ClientConfig{
		User:              a.cfg.user,
		Auth:              methods,
		HostKeyCallback:   a.keys.callback,
		HostKeyAlgorithms: a.keys.algorithms(),
		ClientVersion:     "SSH-2.0-mitostar",
		BannerCallback:    func(string) error { return nil },
		AuthCallback: func(c *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
			a.mu.Lock()
			a.started = true
			a.allowed = c.AllowedMethods
			a.mu.Unlock()
			return nil, nil
		},
	}
}

// errPasswordWithheld stops password authentication to a host whose key
// changed (check_host_keys="ignore"), as ssh does.
var errPasswordWithheld = errors.New("password authentication is disabled to avoid man-in-the-middle attacks: the host key has changed")

// passwordFor gives the password once per connection, as the OpenSSH
// path types it into one prompt only: asked again, it is wrong.
func (a *sshAuth) passwordFor() (string, error) {
	if changed, _ := a.keys.keyChanged(); changed {
		return "", errPasswordWithheld
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.passwordSent {
		return "", &core.PasswordError{Msg: sshPasswordIncorrect}
	}
	a.passwordSent = true
	return a.password, nil
}

// challenge answers keyboard-interactive questions: the password to a
// question that asks for one, once; nothing else can be answered.
func (a *sshAuth) challenge(name, instruction string, questions []string, echos []bool) ([]string, error) {
	answers := make([]string, len(questions))
	for i, q := range questions {
		if echos[i] || !containsFold(q, "password") {
			return nil, fmt.Errorf("keyboard-interactive authentication asks %q, which mitostar can only answer with a password", strings.TrimSpace(q))
		}
		p, err := a.passwordFor()
		if err != nil {
			return nil, err
		}
		answers[i] = p
	}
	return answers, nil
}

// close releases what the handshake used.
func (a *sshAuth) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.agentConn != nil {
		a.agentConn.Close()
		a.agentConn = nil
	}
}

// failure turns the handshake's error into the error the OpenSSH path
// gives for the same cause, with ssh's words as the noise.
func (a *sshAuth) failure(err error) (error, string) {
	var he *core.HostKeyError
	if errors.As(err, &he) {
		return he, a.keys.detail()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started {
		return err, ""
	}
	noise := fmt.Sprintf("%s@%s: Permission denied (%s).\n%v", a.cfg.user, a.cfg.hostname, strings.Join(a.allowed, ","), err)
	var pe *core.PasswordError
	switch {
	case errors.As(err, &pe):
		return pe, noise
	case a.havePassword && a.passwordSent:
		return &core.PasswordError{Msg: sshPasswordIncorrect}, noise
	case a.keyErr != nil && !a.havePassword:
		return &core.PasswordError{Msg: sshAuthIncorrect}, noise + "\n" + a.keyErr.Error()
	case !a.havePassword && slices.Contains(a.allowed, "password"):
		return &core.PasswordError{Msg: sshPasswordRequired}, noise
	}
	if changed, why := a.keys.keyChanged(); changed && a.havePassword {
		noise += "\n" + why + "; " + errPasswordWithheld.Error()
	}
	return &core.PasswordError{Msg: sshAuthIncorrect}, noise
}

// agentDialTimeout bounds the connection to the agent's socket.
const agentDialTimeout = 5 * time.Second

// signers lists the keys to offer, in OpenSSH's order: each identity
// file's key (the agent's copy when the agent holds it), then, unless
// IdentitiesOnly, the agent's other keys, and last the encrypted keys
// whose passphrase is asked only if the server accepts their public key.
func (a *sshAuth) signers() ([]ssh.Signer, error) {
	var fromAgent []ssh.Signer
	if sock := a.cfg.identityAgent; sock != "" {
		conn, err := net.DialTimeout("unix", a.cfg.expandPath(sock), agentDialTimeout)
		if err != nil {
			a.logf("ssh agent at %s: %v", sock, err)
		} else {
			a.mu.Lock()
			a.agentConn = conn
			a.mu.Unlock()
			conn.SetDeadline(time.Now().Add(agentDialTimeout))
			fromAgent, err = agent.NewClient(conn).Signers()
			conn.SetDeadline(time.Time{})
			if err != nil {
				a.logf("ssh agent at %s: %v", sock, err)
			}
		}
	}
	var out, locked []ssh.Signer
	used := map[string]bool{}
	for _, f := range a.cfg.identityFiles {
		path := a.cfg.expandPath(f)
		id, err := loadIdentity(path)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				a.logf("identity file %s: %v", path, err)
			}
			continue
		}
		if id.pub != nil {
			if i := slices.IndexFunc(fromAgent, func(s ssh.Signer) bool { return keysEqual(s.PublicKey(), id.pub) }); i >= 0 {
				used[string(id.pub.Marshal())] = true
				out = append(out, fromAgent[i])
				continue
			}
		}
		if id.signer != nil {
			out = append(out, id.withCertificate(id.signer))
			continue
		}
		ls := &lockedSigner{auth: a, id: id}
		if id.pub == nil {
			// Without a public key to offer, the key must be unlocked
			// before it can be offered at all.
			s, err := ls.unlock()
			if err != nil {
				a.noteKeyErr(err)
				continue
			}
			out = append(out, id.withCertificate(s))
			continue
		}
		locked = append(locked, ls)
	}
	if !a.cfg.identitiesOnly {
		for _, s := range fromAgent {
			if !used[string(s.PublicKey().Marshal())] {
				out = append(out, s)
			}
		}
	}
	return a.withCertificates(append(out, locked...)), nil
}

// withCertificates presents each key with its certificate from
// CertificateFile, when one names it.
func (a *sshAuth) withCertificates(signers []ssh.Signer) []ssh.Signer {
	var certs []*ssh.Certificate
	for _, f := range a.cfg.certificateFiles {
		path := a.cfg.expandPath(f)
		data, err := os.ReadFile(path)
		if err != nil {
			a.logf("certificate file %s: %v", path, err)
			continue
		}
		if k, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
			if c, ok := k.(*ssh.Certificate); ok {
				certs = append(certs, c)
				continue
			}
		}
		a.logf("certificate file %s: not an OpenSSH certificate", path)
	}
	if len(certs) == 0 {
		return signers
	}
	var out []ssh.Signer
	for _, s := range signers {
		for _, c := range certs {
			if keysEqual(c.Key, s.PublicKey()) {
				if cs, err := ssh.NewCertSigner(c, s); err == nil {
					out = append(out, cs)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

func (a *sshAuth) noteKeyErr(err error) {
	a.mu.Lock()
	if a.keyErr == nil {
		a.keyErr = err
	}
	a.mu.Unlock()
}

func keysEqual(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

// An identity is an identity file as read from disk.
type identity struct {
	path   string
	data   []byte
	pub    ssh.PublicKey // nil when not known before unlocking
	signer ssh.Signer    // nil while encrypted
	cert   *ssh.Certificate
}

func loadIdentity(path string) (*identity, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	id := &identity{path: path, data: data}
	if certData, err := os.ReadFile(path + "-cert.pub"); err == nil {
		if k, _, _, _, err := ssh.ParseAuthorizedKey(certData); err == nil {
			id.cert, _ = k.(*ssh.Certificate)
		}
	}
	s, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		id.signer, id.pub = s, s.PublicKey()
	case errors.As(err, &missing):
		id.pub = missing.PublicKey
		if id.pub == nil {
			if pubData, err := os.ReadFile(path + ".pub"); err == nil {
				id.pub, _, _, _, _ = ssh.ParseAuthorizedKey(pubData)
			}
		}
	default:
		return nil, err
	}
	return id, nil
}

// withCertificate presents s with the identity's certificate
// (FILE-cert.pub), when there is one for its key.
func (id *identity) withCertificate(s ssh.Signer) ssh.Signer {
	if id.cert == nil || !keysEqual(id.cert.Key, s.PublicKey()) {
		return s
	}
	cs, err := ssh.NewCertSigner(id.cert, s)
	if err != nil {
		return s
	}
	return cs
}

// A lockedSigner is an encrypted identity file: it offers the public key
// and asks for the passphrase only when the server accepts it.
type lockedSigner struct {
	auth *sshAuth
	id   *identity
}

var _ ssh.AlgorithmSigner = (*lockedSigner)(nil)

func (l *lockedSigner) PublicKey() ssh.PublicKey { return l.id.pub }

func (l *lockedSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := l.unlock()
	if err != nil {
		l.auth.noteKeyErr(err)
		return nil, err
	}
	return s.Sign(rand, data)
}

func (l *lockedSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := l.unlock()
	if err != nil {
		l.auth.noteKeyErr(err)
		return nil, err
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return nil, fmt.Errorf("identity file %s: its key cannot sign with %s", l.id.path, algorithm)
	}
	return as.SignWithAlgorithm(rand, data, algorithm)
}

func (l *lockedSigner) unlock() (ssh.Signer, error) {
	return unlockIdentity(l.auth.ctx, l.id)
}

// Unlocked identity files, by path and content: each passphrase is asked
// once per process. unlockMu also keeps two prompts from interleaving.
var (
	unlockMu sync.Mutex
	unlocked = map[string]ssh.Signer{}
)

// passphraseTries is how many passphrases are asked for one file before
// giving up, as ssh's NumberOfPasswordPrompts.
const passphraseTries = 3

func unlockIdentity(ctx context.Context, id *identity) (ssh.Signer, error) {
	sum := sha256.Sum256(id.data)
	key := id.path + "\x00" + string(sum[:])
	unlockMu.Lock()
	defer unlockMu.Unlock()
	if s := unlocked[key]; s != nil {
		return s, nil
	}
	prompt := fmt.Sprintf("Enter passphrase for key '%s': ", id.path)
	for try := 0; try < passphraseTries; try++ {
		pass, err := askPassphrase(ctx, prompt)
		if err != nil {
			return nil, &core.PasswordError{Msg: fmt.Sprintf("identity file %s is encrypted and its passphrase could not be asked: %v", id.path, err)}
		}
		s, err := ssh.ParsePrivateKeyWithPassphrase(id.data, []byte(pass))
		if errors.Is(err, x509.IncorrectPasswordError) {
			prompt = fmt.Sprintf("Bad passphrase, try again for '%s': ", id.path)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("identity file %s: %w", id.path, err)
		}
		unlocked[key] = s
		return s, nil
	}
	return nil, &core.PasswordError{Msg: fmt.Sprintf("identity file %s: wrong passphrase (%d tries)", id.path, passphraseTries)}
}

// ttyPath is the terminal passphrases are asked on (tests change it).
var ttyPath = "/dev/tty"

// errNoTerminal says that a passphrase cannot be asked.
var errNoTerminal = errors.New("no terminal (add the key to ssh-agent, or set SSH_ASKPASS and SSH_ASKPASS_REQUIRE=force)")

// askPassphrase asks for a passphrase as ssh does: with $SSH_ASKPASS
// when SSH_ASKPASS_REQUIRE is "force" (or "prefer"), else on the
// terminal, else with $SSH_ASKPASS when a display is set.
func askPassphrase(ctx context.Context, prompt string) (string, error) {
	askpass := os.Getenv("SSH_ASKPASS")
	require := os.Getenv("SSH_ASKPASS_REQUIRE")
	if askpass != "" && (require == "force" || require == "prefer") {
		return runAskpass(ctx, askpass, prompt)
	}
	if require != "force" {
		pass, err := readFromTerminal(ctx, prompt)
		if !errors.Is(err, errNoTerminal) {
			return pass, err
		}
	}
	if askpass != "" && require != "never" && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") {
		return runAskpass(ctx, askpass, prompt)
	}
	return "", errNoTerminal
}

func runAskpass(ctx context.Context, askpass, prompt string) (string, error) {
	cmd := exec.CommandContext(ctx, askpass, prompt)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %v %s", askpass, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimRight(string(out), "\r\n"), nil
}

// readFromTerminal writes prompt on the controlling terminal and reads a
// line with echo off, until ctx ends.
func readFromTerminal(ctx context.Context, prompt string) (string, error) {
	tty, err := os.OpenFile(ttyPath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return "", errNoTerminal
	}
	defer tty.Close()
	rc, err := tty.SyscallConn()
	if err != nil {
		return "", errNoTerminal
	}
	var saved *unix.Termios
	rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), ioctlGetTermios)
		if err != nil {
			return
		}
		saved = t
		quiet := *t
		quiet.Lflag &^= unix.ECHO
		quiet.Lflag |= unix.ICANON | unix.ECHONL
		unix.IoctlSetTermios(int(fd), ioctlSetTermios, &quiet)
	})
	if saved == nil {
		return "", errNoTerminal
	}
	defer rc.Control(func(fd uintptr) { unix.IoctlSetTermios(int(fd), ioctlSetTermios, saved) })
	if _, err := io.WriteString(tty, prompt); err != nil {
		return "", err
	}
	stop := context.AfterFunc(ctx, func() { tty.SetReadDeadline(time.Now()) })
	defer stop()
	var line []byte
	buf := make([]byte, 256)
	for {
		n, err := tty.Read(buf)
		line = append(line, buf[:n]...)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			return strings.TrimRight(string(line[:i]), "\r"), nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return "", context.Cause(ctx)
			}
			return "", err
		}
		if len(line) > 4096 {
			return "", errors.New("passphrase line too long")
		}
	}
}
