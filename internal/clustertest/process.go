package clustertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Build compiles the member program pkg (a package path the go command in dir understands, such as
// "./internal/member") into a temporary directory, and returns the binary's path. It is built without
// -race even when the tests run with it: a member is a separate process, and the test process keeps
// the race detector on the coordination code it runs itself.
func Build(dir, pkg, outDir string) (string, error) {
	bin := filepath.Join(outDir, "member")
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("clustertest: building %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// Process is a running member.
type Process struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan Reply
	stderr  *lockedBuffer
	exited  chan struct{} // closed once the process exited and its output was read
}

// Start runs the member binary bin with env added to its environment, and waits (up to a minute)
// until its engine is ready.
func Start(bin string, env ...string) (*Process, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, stdin: stdin, replies: make(chan Reply, 16), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go p.read(stdout)
	r, err := p.next(time.Minute)
	if err == nil && !r.Ready {
		err = fmt.Errorf("clustertest: member did not start: %s", r.Err)
	}
	if err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// read turns the member's stdout into replies, until it exits.
func (p *Process) read(stdout io.Reader) {
	defer close(p.exited)
	defer close(p.replies)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var r Reply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			r = Reply{Err: "unreadable reply: " + sc.Text()}
		}
		p.replies <- r
	}
	_ = p.cmd.Wait()
}

// next waits for the member's next reply.
func (p *Process) next(timeout time.Duration) (Reply, error) {
	select {
	case r, ok := <-p.replies:
		if !ok {
			return Reply{}, fmt.Errorf("clustertest: member exited; stderr: %s", p.stderr.String())
		}
		return r, nil
	case <-time.After(timeout):
		return Reply{}, fmt.Errorf("clustertest: no reply within %v; stderr: %s", timeout, p.stderr.String())
	}
}

// Do sends one command and waits up to timeout for its reply.
func (p *Process) Do(command string, timeout time.Duration) (Reply, error) {
	if _, err := io.WriteString(p.stdin, command+"\n"); err != nil {
		return Reply{}, fmt.Errorf("clustertest: sending %q: %w", command, err)
	}
	r, err := p.next(timeout)
	if err == nil && r.Err != "" {
		err = errors.New("clustertest: member: " + r.Err)
	}
	return r, err
}

// Send sends one command without waiting for its reply; Wait collects it.
func (p *Process) Send(command string) error {
	_, err := io.WriteString(p.stdin, command+"\n")
	return err
}

// Wait collects the reply of a command sent with Send.
func (p *Process) Wait(timeout time.Duration) (Reply, error) { return p.next(timeout) }

// Close asks the member to close its engine and exit, and returns its last reply.
func (p *Process) Close(timeout time.Duration) (Reply, error) {
	r, err := p.Do("close", timeout)
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
		return r, errors.Join(err, errors.New("clustertest: member did not exit after close"))
	}
	return r, err
}

// Kill ends the member at once (SIGKILL) and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	_ = p.stdin.Close()
	<-p.exited
}

// lockedBuffer is a bytes.Buffer that the process writes and the test reads at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}
