package localstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one child process of the stack. It runs in its own process group so that
// everything it forks is stopped with it, and it receives SIGKILL when the thread that
// started it dies (Pdeathsig), so a crashed or timed-out test leaves nothing running.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// spawner starts processes from one goroutine locked to its OS thread for the lifetime
// of the stack. Pdeathsig is delivered when the *thread* that forked the child exits;
// Go may retire an arbitrary thread when a goroutine exits while locked to it, so
// forking from a thread we own keeps children alive exactly as long as we want them.
type spawner struct {
	reqs chan spawnReq
	quit chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), quit: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		runtime.LockOSThread()
		// Unlock on the way out so that the thread returns to the pool instead of being
		// terminated (which would SIGKILL children still running). close() is only
		// called after every child has exited.
		defer runtime.UnlockOSThread()
		for {
			select {
			case r := <-s.reqs:
				r.reply <- r.cmd.Start()
			case <-s.quit:
				return
			}
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	reply := make(chan error, 1)
	select {
	case s.reqs <- spawnReq{cmd: cmd, reply: reply}:
		return <-reply
	case <-s.quit:
		return errors.New("localstack: stack is stopped")
	}
}

func (s *spawner) close() {
	s.once.Do(func() { close(s.quit) })
	s.wg.Wait()
}

// startProcess starts bin with args and env (added to a minimal environment), logging
// stdout and stderr to <logDir>/<name>.log.
func startProcess(sp *spawner, logDir, name, bin string, args, env []string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("localstack: log file for %s: %w", name, err)
	}
	fmt.Fprintf(f, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(baseEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := sp.start(cmd); err != nil {
		_ = f.Close() // the start error is what matters
		return nil, fmt.Errorf("localstack: starting %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		fmt.Fprintf(f, "=== %s exited: %v\n", time.Now().Format(time.RFC3339Nano), exitStatus(p.waitErr))
		_ = f.Close() // best effort: the process is gone
		close(p.done)
	}()
	return p, nil
}

// baseEnv is the environment every child gets: enough to run, nothing that changes
// Kubernetes or sigstore behaviour behind our back (KUBECONFIG, proxies, TUF roots).
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "TMPDIR", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// exited reports whether the process has exited, with its error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// errIfExited returns an error describing an unexpected exit, or nil while running.
func (p *process) errIfExited() error {
	if ok, err := p.exited(); ok {
		return fmt.Errorf("localstack: %s exited during start-up (%s); last log lines:\n%s",
			p.name, exitStatus(err), tailFile(p.logPath, 30))
	}
	return nil
}

// stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs the group.
// It returns once the process has been reaped.
func (p *process) stop(grace time.Duration) {
	if p == nil {
		return
	}
	if ok, _ := p.exited(); ok {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// kill SIGKILLs the process group at once and returns once the process has been reaped.
func (p *process) kill() {
	if p == nil {
		return
	}
	if ok, _ := p.exited(); ok {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// waitUntil polls check every interval until it returns true, an error, ctx ends or one
// of procs exits.
func waitUntil(ctx context.Context, what string, interval time.Duration, procs []*process, check func(context.Context) (bool, error)) error {
	var lastErr error
	for {
		for _, p := range procs {
			if err := p.errIfExited(); err != nil {
				return err
			}
		}
		ok, err := check(ctx)
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("localstack: waiting for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			}
			return fmt.Errorf("localstack: waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// tailFile returns the last n lines of a file (at most 64 KiB are read).
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const maxRead = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := st.Size() - maxRead
	if off < 0 {
		off = 0
	}
	buf, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return err.Error()
	}
	buf = bytes.TrimRight(buf, "\n")
	lines := bytes.Split(buf, []byte("\n"))
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // first line is probably cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
