package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/resilientclient/resilient/internal/clustertest"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

// clusterReplicas and clusterRequests size the cluster act.
const clusterReplicas, clusterRequests = 3, 300

// clusterAct is -cluster: three replica processes on loopback share one credential family through
// a SQLite file (engine.WithCluster with the sqlitestore module's coordinator). The access token is
// refused under 300 concurrent requests on every replica at once, and the token endpoint sees one
// refresh for all of them. The replicas are built from ./sqlitestore/internal/member (a module of its
// own, so that the engine never depends on SQLite): run it from the repository's root. It returns
// the exit code.
func clusterAct(stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "demo: -cluster:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join("sqlitestore", "internal", "member")); err != nil {
		return fail(errors.New("run it from the repository's root: the replicas are built from ./sqlitestore/internal/member"))
	}
	dir, err := os.MkdirTemp("", "resilient-cluster-demo")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(stdout, "Cluster: building the replica program (./sqlitestore/internal/member)...")
	bin, err := clustertest.Build("sqlitestore", "./internal/member", dir)
	if err != nil {
		return fail(err)
	}
	srv := fakeapi.Start(fakeapi.Options{Opaque: true})
	defer srv.Close()
	env := []string{clustertest.EnvAPI + "=" + srv.URL(), clustertest.EnvTokenURL + "=" + srv.OAuth2TokenURL(),
		clustertest.EnvTTL + "=5s", clustertest.EnvStore + "=" + filepath.Join(dir, "tokens.db")}
	var members []*clustertest.Process
	defer func() {
		for _, m := range members {
			m.Kill()
		}
	}()
	// The first replica signs ada in (SetTokens: her pair goes to the shared file); the others start
	// from the file.
	for i := range clusterReplicas {
		m, err := clustertest.Start(bin, env...)
		if err != nil {
			return fail(err)
		}
		members = append(members, m)
		if i == 0 {
			pair := srv.Login("ada")
			if _, err := m.Do("set "+pair.Access+" "+pair.Refresh, 30*time.Second); err != nil {
				return fail(err)
			}
		}
	}
	fmt.Fprintf(stdout, "Cluster: %d replica processes share ada's tokens through a SQLite file; the API now refuses her access token.\n", clusterReplicas)
	srv.ExpireAccessTokens()
	for _, m := range members {
		if err := m.Send(fmt.Sprintf("get %d 20000", clusterRequests)); err != nil {
			return fail(err)
		}
	}
	ok := true
	var lines []string
	for i, m := range members {
		r, err := m.Wait(time.Minute)
		if err != nil {
			return fail(err)
		}
		lines = append(lines, fmt.Sprintf("replica %d: %d/%d answered 200", i+1, r.OK, clusterRequests))
		ok = ok && r.OK == clusterRequests
	}
	for _, m := range members {
		if r, err := m.Close(30 * time.Second); err != nil || r.Leaks != "" {
			ok = false
			fmt.Fprintln(stderr, "demo: -cluster: a replica did not close cleanly:", err, r.Leaks)
		}
	}
	members = nil
	st := srv.Stats()
	fmt.Fprintln(stdout, "  "+strings.Join(lines, "\n  "))
	fmt.Fprintf(stdout, "  token endpoint: %d refresh call(s) for %d requests on %d processes; refresh tokens replayed: %d\n",
		st.RefreshCalls, clusterReplicas*clusterRequests, clusterReplicas, st.ReuseDetected)
	ok = ok && st.RefreshCalls == 1 && st.ReuseDetected == 0
	verdict := "ok: one refresh served every replica"
	if !ok {
		verdict = "FAILED: expected one refresh and every request answered"
	}
	fmt.Fprintln(stdout, "Cluster:", verdict)
	if !ok {
		return 1
	}
	return 0
}
