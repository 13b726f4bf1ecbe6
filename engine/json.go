package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/resilientclient/resilient/actors"
	"github.com/resilientclient/resilient/internal/redact"
)

// timeNow is the clock of token expiry computations; tests may replace it.
var timeNow = time.Now

// drainWait bounds how long a typed helper waits for the rest of a body it does not need.
const drainWait = 50 * time.Millisecond

// Target is what the typed helpers send through: an *Engine (its default family's credentials) or
// a *Family (that family's).
type Target interface {
	target() (*Engine, *Family, *http.Client)
}

func (e *Engine) target() (*Engine, *Family, *http.Client) { return e, nil, e.client }
func (f *Family) target() (*Engine, *Family, *http.Client) { return f.e, f, f.client }

// GetJSON sends GET path and decodes the JSON answer into a T.
func GetJSON[T any](ctx context.Context, to Target, path string) (T, error) {
	return DoJSON[T](ctx, to, http.MethodGet, path, nil)
}

// PostJSON sends body as JSON with POST path and decodes the JSON answer into a T.
func PostJSON[T any](ctx context.Context, to Target, path string, body any) (T, error) {
	return DoJSON[T](ctx, to, http.MethodPost, path, body)
}

// PutJSON sends body as JSON with PUT path and decodes the JSON answer into a T.
func PutJSON[T any](ctx context.Context, to Target, path string, body any) (T, error) {
	return DoJSON[T](ctx, to, http.MethodPut, path, body)
}

// PatchJSON sends body as JSON with PATCH path and decodes the JSON answer into a T.
func PatchJSON[T any](ctx context.Context, to Target, path string, body any) (T, error) {
	return DoJSON[T](ctx, to, http.MethodPatch, path, body)
}

// DeleteJSON sends DELETE path and decodes the JSON answer, if any, into a T.
func DeleteJSON[T any](ctx context.Context, to Target, path string) (T, error) {
	return DoJSON[T](ctx, to, http.MethodDelete, path, nil)
}

// DoJSON is the typed helpers' common path. path is joined to the base URL's path ("/items/1" with
// base https://api.example.com/v2 is https://api.example.com/v2/items/1); an absolute URL is used as
// it is. A nil body sends none; any other is encoded as JSON (and can be replayed after a 401).
// A 2xx answer is decoded into T (an empty answer or 204 gives T's zero value); any other status
// gives an *APIError; transport failures and ctx errors come back wrapped, usable with errors.Is.
func DoJSON[T any](ctx context.Context, to Target, method, path string, body any) (T, error) {
	var zero T
	if isNil(to) {
		return zero, configErr("DoJSON", "nil Engine or Family")
	}
	e, fam, client := to.target()
	if e == nil { // a zero Family{}: not one Engine.Family made
		return zero, configErr("DoJSON", "a Family not made by Engine.Family")
	}
	u, err := e.resolve(path)
	if err != nil {
		return zero, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return zero, fmt.Errorf("engine: encoding the %s %s body: %w", method, redact.URL(u), err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return zero, fmt.Errorf("engine: %w", err)
	}
	// drain, below, may end the request's context to stop waiting for a server that stalls.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var rep actors.Report
	req = req.WithContext(actors.WithReport(rctx, &rep))
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req) // follows redirects; the token is re-decided on every hop
	if err != nil {
		var ue *url.Error // its text carries the raw URL; ours is redacted
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = fmt.Errorf("engine: %s %s: %w", method, redact.URL(u), err)
		e.fail(ctx, &Failure{Family: familyKey(fam), Method: method, URL: redact.URL(u), Attempts: attempts(&rep), Err: err})
		return zero, err
	}
	defer func() {
		// Read what the decoder left (a trailing newline, an unread error body) so the connection
		// can be reused, but never much of it, and never wait long for it: a server that stalls
		// after the answer loses its connection instead of holding the caller.
		t := time.AfterFunc(drainWait, cancel)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		t.Stop()
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae, ok := rep.Failure.(*APIError)
		if !ok { // a 1xx or 3xx that was not followed: no failure was recorded on the way
			ae = e.readAPIError(ctx, resp, familySecrets(fam))
		}
		e.fail(ctx, &Failure{Family: familyKey(fam), Method: method, URL: ae.URL, Status: ae.Status, Attempts: attempts(&rep), Err: ae})
		return zero, ae
	}
	if resp.StatusCode == http.StatusNoContent {
		return zero, nil
	}
	var out T
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		if errors.Is(err, io.EOF) {
			return zero, nil
		}
		err = fmt.Errorf("engine: decoding the %s %s answer: %w", method, redact.URL(u), err)
		e.fail(ctx, &Failure{Family: familyKey(fam), Method: method, URL: redact.URL(u), Status: resp.StatusCode, Attempts: attempts(&rep), Err: err})
		return zero, err
	}
	return out, nil
}

// attempts is the number of sends a report says a request took (at least one).
func attempts(rep *actors.Report) int { return max(rep.Attempts, 1) }

// resolve joins path to the base URL.
func (e *Engine) resolve(path string) (*url.URL, error) {
	ref, err := url.Parse(path)
	if err != nil {
		var ue *url.Error // its text quotes the path, whose query may hold a key
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("engine: bad path: %w", err)
	}
	if ref.IsAbs() {
		return ref, nil
	}
	if e.base == nil {
		return nil, configErr("WithBaseURL", "relative path %q needs a base URL", ref.Path)
	}
	u := *e.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(ref.Path, "/")
	u.RawPath = ""
	u.RawQuery = ref.RawQuery
	u.Fragment = ""
	return &u, nil
}
