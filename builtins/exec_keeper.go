package builtins

// The process groups of exec's programs die with their context. Each
// program runs in a group of its own, and dies with this process
// (Pdeathsig) or with its call (a timeout, a cancellation kills the
// group); what it leaves running in the background (`sleep 300 &`) stays
// in its group. A keeper, one small `sh` per context started with the
// context's first program, holds the ids of those groups, read from a
// pipe that only this process holds: when the pipe ends — the context
// shut down, or its process died, even by SIGKILL — the keeper kills
// every group it still holds, then exits. A program that leaves its
// group (setsid) leaves this care too.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/mitostar/mitostar/core"
)

// keeperScript reads "+PGID" and "-PGID" lines into the set of groups it
// keeps, and kills those left when its input ends. Signals that would
// stop it early (a terminal's hangup among them) are ignored.
const keeperScript = `trap '' HUP INT TERM PIPE QUIT
g=' '
while IFS= read -r l; do
	case $l in
	+*) g="$g${l#+} " ;;
	-*) p=${l#-}; case $g in *" $p "*) g="${g%%" $p "*} ${g#*" $p "}" ;; esac ;;
	esac
done
for p in $g; do kill -s KILL -- "-$p" 2>/dev/null; done
`

// A groupKeeper is this side of one context's keeper.
type groupKeeper struct {
	r *core.Router

	mu     sync.Mutex
	w      *os.File     // the keeper's input; nil until started, or after it failed
	groups map[int]bool // groups that may still hold processes
	closed bool         // the router's lifetime ended: no new keeper
	warned bool         // a failure to keep groups was logged
}

// keeperOf returns the keeper of r's context, made at first use.
func keeperOf(r *core.Router) *groupKeeper {
	rs := routerStateOf(r)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.keeper == nil {
		k := &groupKeeper{r: r, groups: map[int]bool{}}
		rs.keeper = k
		// The router owns this goroutine: at the end of its lifetime the
		// keeper's input closes, the keeper kills what is left and exits.
		r.Go(func() {
			<-r.Lifetime().Done()
			k.mu.Lock()
			defer k.mu.Unlock()
			k.closed = true
			if k.w != nil {
				k.w.Close()
				k.w = nil
			}
		})
	}
	return rs.keeper
}

// add hands the group pgid to the keeper (after forgetting the groups
// of earlier programs that have emptied). A keeper that cannot run (no
// /bin/sh) is logged once; the program runs all the same.
func (k *groupKeeper) add(pgid int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return // the context is going: the program's call is cancelled
	}
	for g := range k.groups {
		if groupGone(g) {
			delete(k.groups, g)
			k.sendLocked(fmt.Sprintf("-%d\n", g))
		}
	}
	k.groups[pgid] = true
	if err := k.sendLocked(fmt.Sprintf("+%d\n", pgid)); err != nil && !k.warned {
		k.warned = true
		k.r.Emit(slog.LevelWarn, err.Error()+": what programs leave running may outlive this context")
	}
}

// finished is told when the program leading group pgid has exited: the
// keeper forgets the group unless something still runs in it.
func (k *groupKeeper) finished(pgid int) {
	if !groupGone(pgid) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.groups[pgid] {
		delete(k.groups, pgid)
		k.sendLocked(fmt.Sprintf("-%d\n", pgid))
	}
}

// groupGone reports whether no process is left in group pgid.
func groupGone(pgid int) bool {
	return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

// sendLocked writes line to the keeper, starting one (and telling it
// every group) if none runs. k.mu is held.
func (k *groupKeeper) sendLocked(line string) error {
	if k.w != nil {
		if _, err := k.w.WriteString(line); err == nil {
			return nil
		}
		k.w.Close() // the keeper died: a new one takes over
		k.w = nil
	}
	if err := k.startLocked(); err != nil {
		return err
	}
	for g := range k.groups { // the whole set: line is in it, or was taken out
		if _, err := fmt.Fprintf(k.w, "+%d\n", g); err != nil {
			return fmt.Errorf("exec: the keeper of process groups: %w", err)
		}
	}
	return nil
}

// startLocked starts a keeper: in a process group of its own (a signal
// sent to the context's group does not reach it) and without Pdeathsig,
// since it must outlive this process.
func (k *groupKeeper) startLocked() error {
	pr, pw, err := os.Pipe() // close-on-exec: no program inherits the write end
	if err != nil {
		return fmt.Errorf("exec: the keeper of process groups: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", keeperScript)
	cmd.Stdin = pr
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pr.Close()
	if err != nil {
		pw.Close()
		return fmt.Errorf("exec: starting the keeper of process groups: %w", err)
	}
	k.w = pw
	k.r.Go(func() { cmd.Wait() }) // it exits once its input ends
	return nil
}
