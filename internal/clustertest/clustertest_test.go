package clustertest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilientclient/resilient/internal/clustertest"
	"github.com/resilientclient/resilient/internal/fakeapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The member protocol, on a member whose coordinator holds nothing: its default family has no
// session, a family it is given tokens for through nothing fails the same way, and close reports a
// clean exit.
func TestMemberProtocol(t *testing.T) {
	bin, err := clustertest.Build(".", "./testmember", t.TempDir())
	require.NoError(t, err)
	srv := fakeapi.Start(fakeapi.Options{})
	defer srv.Close()
	p, err := clustertest.Start(bin, clustertest.EnvAPI+"="+srv.URL(), clustertest.EnvTokenURL+"="+srv.OAuth2TokenURL(), clustertest.EnvTTL+"=2s")
	require.NoError(t, err)

	r, err := p.Do("get 5 1000", 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"session_expired": 5}, r.Failed)
	_, err = p.Do("family acme", 10*time.Second)
	require.NoError(t, err)
	r, err = p.Do("get 3 1000", 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, 3, r.Failed["session_expired"])
	_, err = p.Do("nonsense", 10*time.Second)
	assert.ErrorContains(t, err, "unknown command")

	r, err = p.Close(10 * time.Second)
	require.NoError(t, err)
	assert.True(t, r.Closed)
	assert.Empty(t, r.Leaks)
}
