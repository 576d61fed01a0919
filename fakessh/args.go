package fakessh

import (
	"errors"
	"fmt"
	"strings"
)

// sshOptions lists OpenSSH's command-line options (ssh.c, OpenSSH 9);
// a colon follows those that take an argument.
const sshOptions = "1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy"

// request is what an ssh command line asks for.
type request struct {
	Host      string // ignored: every host is the target context
	Command   string // the command words joined with spaces
	Subsystem bool   // -s: Command names a subsystem
	Version   bool   // -V
}

// parseSSH parses an ssh command line (without argv[0]) the way OpenSSH
// does: options, the destination, options again (unless "--" ended
// them), then the command words.
func parseSSH(args []string) (*request, error) {
	req := &request{}
	terminated := false
	i := 0
	parseOpts := func() error {
		for i < len(args) && !terminated {
			a := args[i]
			if a == "--" {
				terminated = true
				i++
				return nil
			}
			if len(a) < 2 || a[0] != '-' {
				return nil
			}
			i++
			for j := 1; j < len(a); j++ {
				c := a[j]
				k := strings.IndexByte(sshOptions, c)
				if k < 0 || c == ':' {
					return fmt.Errorf("unknown option -- %c", c)
				}
				if k+1 < len(sshOptions) && sshOptions[k+1] == ':' {
					if j+1 < len(a) {
						j = len(a) // the rest of the word is the argument
					} else if i < len(args) {
						i++
					} else {
						return fmt.Errorf("option requires an argument -- %c", c)
					}
					break
				}
				switch c {
				case 's':
					req.Subsystem = true
				case 'V':
					req.Version = true
				case 'N':
					return errors.New("-N (no command) is not supported by fakessh")
				}
			}
		}
		return nil
	}
	if err := parseOpts(); err != nil {
		return nil, err
	}
	if req.Version {
		return req, nil
	}
	if i >= len(args) {
		return nil, errors.New("usage: ssh [options] destination command [argument ...]")
	}
	req.Host = args[i]
	i++
	if err := parseOpts(); err != nil {
		return nil, err
	}
	req.Command = strings.Join(args[i:], " ")
	if req.Command == "" {
		return nil, fmt.Errorf("no command given for %s: fakessh runs commands, not interactive shells", req.Host)
	}
	return req, nil
}
