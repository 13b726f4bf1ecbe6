package sqlitestore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilientclient/resilient/engine"
)

// The multi-process tests run this test binary again as child processes (TestMain sees the role in
// the environment and runs it instead of the tests). A child opens the same file and talks with
// the parent in lines: it says "ready" (or what it loaded), waits for the parent's "go", which the
// parent sends only once every child is ready, and reports what happened. The barrier is the
// pipes, not sleeps.
const (
	childRoleEnv = "SQLITESTORE_TEST_CHILD_ROLE"
	childPathEnv = "SQLITESTORE_TEST_CHILD_PATH"
	childIDEnv   = "SQLITESTORE_TEST_CHILD_ID"

	childTimeout   = 2 * time.Minute // a child's whole life
	processTimeout = 3 * time.Minute // a multi-process test's whole life

	familiesPerChild   = 200
	incrementsPerChild = 50
	// maxConflictsPerChild stops a counter child whose saves always conflict (a broken store)
	// long before its timeout; a working store meets a few dozen.
	maxConflictsPerChild = 50 * incrementsPerChild

	casFamily     = "cas"
	counterFamily = "counter"
)

// childRoles are what a child process can do, by name.
var childRoles = map[string]func(ctx context.Context, s *Store, id int, in *bufio.Scanner, out io.Writer) error{
	"families": childFamilies,
	"cas":      childCAS,
	"counter":  childCounter,
}

// runChild is a child process's main: it returns the exit code.
func runChild(role string) int {
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	err := func() error {
		run, ok := childRoles[role]
		if !ok {
			return fmt.Errorf("no role %q", role)
		}
		id, err := strconv.Atoi(os.Getenv(childIDEnv))
		if err != nil {
			return err
		}
		s, err := Open(os.Getenv(childPathEnv))
		if err != nil {
			return err
		}
		defer s.Close()
		return run(ctx, s, id, bufio.NewScanner(os.Stdin), os.Stdout)
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
		return 1
	}
	return 0
}

// await reads the parent's next line, which must be want.
func await(in *bufio.Scanner, want string) error {
	if !in.Scan() {
		return fmt.Errorf("waiting for %q: stdin ended (%v)", want, in.Err())
	}
	if got := in.Text(); got != want {
		return fmt.Errorf("waiting for %q: got %q", want, got)
	}
	return nil
}

func processFamily(child, i int) string { return fmt.Sprintf("p%d-f%03d", child, i) }

// processPair is save n of family i of child: every field differs from one save to the next.
func processPair(child, i, n int) engine.Tokens {
	return engine.Tokens{
		Access:  fmt.Sprintf("access-%d-%d-%d", child, i, n),
		Refresh: fmt.Sprintf("refresh-%d-%d-%d", child, i, n),
		Expiry:  time.Unix(1_900_000_000+int64(i), int64(child*1000+n)),
		Type:    []string{"", "DPoP"}[n%2],
	}
}

// childFamilies loads and saves twice each of its own families, then reads them all back.
func childFamilies(ctx context.Context, s *Store, id int, in *bufio.Scanner, out io.Writer) error {
	fmt.Fprintln(out, "ready")
	if err := await(in, "go"); err != nil {
		return err
	}
	for i := range familiesPerChild {
		f := processFamily(id, i)
		got, err := s.Load(ctx, f)
		if err != nil {
			return err
		}
		if got != (engine.Tokens{}) {
			return fmt.Errorf("%s: found %v before any save", f, got)
		}
		for n := 1; n <= 2; n++ {
			if err := s.Save(ctx, f, processPair(id, i, n)); err != nil {
				return err
			}
		}
	}
	for i := range familiesPerChild {
		f := processFamily(id, i)
		got, err := s.Load(ctx, f)
		if err != nil {
			return err
		}
		if !samePair(got, processPair(id, i, 2)) {
			return fmt.Errorf("%s: loaded %v, not its second save", f, got)
		}
	}
	fmt.Fprintln(out, "done")
	return nil
}

// childCAS loads the shared family, says what it found, and on "go" saves its own pair over it,
// reporting "saved" or "conflict".
func childCAS(ctx context.Context, s *Store, id int, in *bufio.Scanner, out io.Writer) error {
	t, err := s.Load(ctx, casFamily)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "loaded", t.Access)
	if err := await(in, "go"); err != nil {
		return err
	}
	err = s.Save(ctx, casFamily, engine.Tokens{Access: fmt.Sprint("cas-access-", id), Refresh: fmt.Sprint("cas-refresh-", id)})
	switch {
	case errors.Is(err, ErrConflict):
		fmt.Fprintln(out, "conflict")
	case err != nil:
		return err
	default:
		fmt.Fprintln(out, "saved")
	}
	return nil
}

// childCounter adds one to the counter family's Access incrementsPerChild times, each a load and a
// save, loading again after each conflict, and reports how many conflicts it met.
func childCounter(ctx context.Context, s *Store, id int, in *bufio.Scanner, out io.Writer) error {
	fmt.Fprintln(out, "ready")
	if err := await(in, "go"); err != nil {
		return err
	}
	conflicts := 0
	for done := 0; done < incrementsPerChild; {
		if conflicts > maxConflictsPerChild {
			return fmt.Errorf("%d conflicts for %d increments: the saves cannot get through", conflicts, done)
		}
		t, err := s.Load(ctx, counterFamily)
		if err != nil {
			return err
		}
		n := 0
		if t.Access != "" {
			if n, err = strconv.Atoi(t.Access); err != nil {
				return err
			}
		}
		err = s.Save(ctx, counterFamily, engine.Tokens{Access: strconv.Itoa(n + 1), Refresh: fmt.Sprint("by-", id)})
		switch {
		case errors.Is(err, ErrConflict):
			conflicts++
		case err != nil:
			return err
		default:
			done++
		}
	}
	fmt.Fprintln(out, "done", conflicts)
	return nil
}

// childProc is a running child process as the parent sees it.
type childProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr bytes.Buffer // read only after cmd.Wait
	waited bool
}

// startChild runs this test binary as a child with role on the file at path.
func startChild(ctx context.Context, t *testing.T, role, path string, id int) *childProc {
	t.Helper()
	c := &childProc{name: fmt.Sprintf("%s child %d", role, id)}
	c.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childRoleEnv+"="+role, childPathEnv+"="+path, childIDEnv+"="+strconv.Itoa(id))
	c.cmd.Stderr = &c.stderr
	c.cmd.WaitDelay = 10 * time.Second
	var err error
	c.stdin, err = c.cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	c.lines = bufio.NewScanner(stdout)
	require.NoError(t, c.cmd.Start())
	t.Cleanup(func() {
		if !c.waited {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	return c
}

// next is the child's next line; the test fails, with the child's stderr, if there is none.
func (c *childProc) next(t *testing.T) string {
	t.Helper()
	if c.lines.Scan() {
		return c.lines.Text()
	}
	err := c.cmd.Wait()
	c.waited = true
	t.Fatalf("%s ended without a line (%v): %s", c.name, err, c.stderr.String())
	return ""
}

func (c *childProc) send(t *testing.T, line string) {
	t.Helper()
	_, err := io.WriteString(c.stdin, line+"\n")
	require.NoError(t, err, c.name)
}

// wait waits for the child to exit, which must be with status 0.
func (c *childProc) wait(t *testing.T) {
	t.Helper()
	require.NoError(t, c.stdin.Close())
	err := c.cmd.Wait()
	c.waited = true
	require.NoError(t, err, "%s: %s", c.name, c.stderr.String())
}

// startAll starts n children with role on path, waits until each says ready, and lets them go.
func startAll(ctx context.Context, t *testing.T, role, path string, n int) []*childProc {
	t.Helper()
	children := make([]*childProc, n)
	for i := range children {
		children[i] = startChild(ctx, t, role, path, i)
	}
	for _, c := range children {
		require.Equal(t, "ready", c.next(t), c.name)
	}
	for _, c := range children {
		c.send(t, "go")
	}
	return children
}

// Four processes save 200 families each into one file at the same time: every row is there, as
// its last save left it, with version 2.
func TestProcessesShareOneFile(t *testing.T) {
	const processes = 4
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	path := filepath.Join(t.TempDir(), "tokens.db")
	s := openStore(t, path) // creates the file first, as the service that owns it would

	for _, c := range startAll(ctx, t, "families", path, processes) {
		assert.Equal(t, "done", c.next(t), c.name)
		c.wait(t)
	}

	var rows int
	require.NoError(t, s.db.QueryRowContext(ctx, "SELECT count(*) FROM resilient_tokens").Scan(&rows))
	assert.Equal(t, processes*familiesPerChild, rows)
	for p := range processes {
		for i := range familiesPerChild {
			f := processFamily(p, i)
			got, err := s.Load(ctx, f)
			require.NoError(t, err)
			if !assert.True(t, samePair(processPair(p, i, 2), got), f) {
				return
			}
			_, version, _ := row(t, s, f)
			assert.Equal(t, int64(2), version, f)
		}
	}
}

// Two processes load the same family at the same version and then both save it, released together
// from a barrier: exactly one save goes through, the other gets ErrConflict, and the row holds the
// winner's pair. Several rounds, so that the two saves really race.
func TestProcessesCompareAndSwap(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	path := filepath.Join(t.TempDir(), "tokens.db")
	s := openStore(t, path)
	_, err := s.Load(ctx, casFamily)
	require.NoError(t, err)
	for n := 1; n <= 3; n++ {
		require.NoError(t, s.Save(ctx, casFamily, engine.Tokens{Access: fmt.Sprint("seed-", n)}))
	}

	for round := range 5 {
		_, before, _ := row(t, s, casFamily)
		current, err := s.Load(ctx, casFamily)
		require.NoError(t, err)
		children := []*childProc{startChild(ctx, t, "cas", path, 0), startChild(ctx, t, "cas", path, 1)}
		for _, c := range children {
			require.Equal(t, "loaded "+current.Access, c.next(t), c.name)
		}
		for _, c := range children {
			c.send(t, "go")
		}
		outcome := map[string]int{}
		var winner int
		for i, c := range children {
			got := c.next(t)
			outcome[got]++
			if got == "saved" {
				winner = i
			}
			c.wait(t)
		}
		require.Equal(t, map[string]int{"saved": 1, "conflict": 1}, outcome, "round %d", round)
		tok, after, _ := row(t, s, casFamily)
		assert.Equal(t, before+1, after, "round %d: one save, one version", round)
		assert.Equal(t, fmt.Sprint("cas-access-", winner), tok.Access, "round %d: the winner's pair", round)
	}
}

// Four processes each add one to a counter 50 times, by load and save, starting over on
// ErrConflict: no increment is lost, which a save that overwrote a row it had not loaded would do.
func TestProcessesLoseNoUpdate(t *testing.T) {
	const processes = 4
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	path := filepath.Join(t.TempDir(), "tokens.db")
	s := openStore(t, path)

	conflicts := 0
	for _, c := range startAll(ctx, t, "counter", path, processes) {
		n, ok := strings.CutPrefix(c.next(t), "done ")
		require.True(t, ok, c.name)
		k, err := strconv.Atoi(n)
		require.NoError(t, err)
		conflicts += k
		c.wait(t)
	}
	t.Logf("%d conflicts along the way", conflicts)
	tok, version, ok := row(t, s, counterFamily)
	require.True(t, ok)
	assert.Equal(t, strconv.Itoa(processes*incrementsPerChild), tok.Access)
	assert.Equal(t, int64(processes*incrementsPerChild), version)
}
