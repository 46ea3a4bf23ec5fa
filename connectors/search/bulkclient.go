package search

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// bulkClientConfig is what the HTTP side of the bulk sink needs from
// BulkConfig, which is generic.
type bulkClientConfig struct {
	username, password, apiKey string
	header                     http.Header
	tls                        *tls.Config
	httpClient                 *http.Client
	timeout                    time.Duration
	refresh                    string
	maxBatchBytes              int
	retry                      RetryPolicy
	onRejected                 func(context.Context, Rejection) error
	log                        *slog.Logger
}

// bulkClient speaks the Bulk API to a cluster's nodes for one subtask: one
// request at a time, from the subtask's goroutine.
type bulkClient struct {
	sink string
	urls []*url.URL
	cfg  bulkClientConfig
	http *http.Client
	own  *http.Transport // made here, closed by close
	node int             // the node requests go to

	// counts, for tests and logs
	requests, conflicts, retried int
}

func newBulkClient(sink string, urls []*url.URL, cfg bulkClientConfig) *bulkClient {
	c := &bulkClient{sink: sink, urls: urls, cfg: cfg, http: cfg.httpClient}
	if c.http == nil {
		c.own = http.DefaultTransport.(*http.Transport).Clone()
		c.own.TLSClientConfig = cfg.tls
		c.http = &http.Client{Transport: c.own}
	}
	return c
}

func (c *bulkClient) close() {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
}

// endpoint is path under the current node's base URL.
func (c *bulkClient) endpoint(path string) string {
	u := *c.urls[c.node%len(c.urls)]
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String()
}

func (c *bulkClient) nextNode() { c.node = (c.node + 1) % len(c.urls) }

func (c *bulkClient) newRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path), r)
	if err != nil {
		return nil, err
	}
	for k, vs := range c.cfg.header {
		req.Header[k] = slices.Clone(vs)
	}
	switch {
	case c.cfg.username != "":
		req.SetBasicAuth(c.cfg.username, c.cfg.password)
	case c.cfg.apiKey != "":
		req.Header.Set("Authorization", "ApiKey "+c.cfg.apiKey)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// do sends a request with the per-request timeout and reads the answer.
func (c *bulkClient) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return 0, nil, err
	}
	c.requests++
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read response: %w", method, req.URL.Redacted(), err)
	}
	return resp.StatusCode, b, nil
}

// retryableStatus is a status worth another try: too many requests, or a
// server-side failure that may pass (a node restarting, a full queue).
func retryableStatus(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// isCertificateError reports a server certificate that does not verify:
// a retry cannot fix that.
func isCertificateError(err error) bool {
	var cerr *tls.CertificateVerificationError
	return errors.As(err, &cerr)
}

// wait sleeps before retry attempt+1, or returns ctx's error.
func (c *bulkClient) wait(ctx context.Context, attempt int) error {
	t := time.NewTimer(c.cfg.retry.Backoff(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ping asks a node for its root (the cluster information) until one
// answers. A connection error or 429 and 5xx answers are retried, 401 is
// ErrRequest, any other answer counts as reachable (a user allowed to write
// documents may not be allowed to read cluster information).
func (c *bulkClient) ping(ctx context.Context, index string) error {
	for attempt := 1; ; attempt++ {
		status, body, err := c.do(ctx, http.MethodGet, "/", nil)
		switch {
		case err == nil && status == http.StatusUnauthorized:
			return fmt.Errorf("%w: bulk sink %q, index %q: GET %s: 401 unauthorized: %s (check Username and Password or APIKey)",
				ErrRequest, c.sink, index, c.endpoint("/"), describeErrorBody(body))
		case err == nil && !retryableStatus(status):
			return nil
		case isCertificateError(err):
			return fmt.Errorf("%w: bulk sink %q, index %q: %w (set BulkConfig.TLS)", ErrRequest, c.sink, index, err)
		case ctx.Err() != nil:
			return fmt.Errorf("bulk sink %q, index %q: %w", c.sink, index, ctx.Err())
		case err == nil:
			err = fmt.Errorf("GET %s: %d %s", c.endpoint("/"), status, describeErrorBody(body))
		}
		if attempt >= c.cfg.retry.MaxAttempts {
			return fmt.Errorf("%w: bulk sink %q, index %q: no node of %s answered after %d attempts; last: %w",
				ErrUnavailable, c.sink, index, c.describeNodes(), attempt, err)
		}
		c.cfg.log.Warn("search: node not reachable, retrying", "sink", c.sink, "attempt", attempt, "error", err)
		c.nextNode()
		if err := c.wait(ctx, attempt); err != nil {
			return fmt.Errorf("bulk sink %q, index %q: %w", c.sink, index, err)
		}
	}
}

func (c *bulkClient) describeNodes() string {
	s := make([]string, len(c.urls))
	for i, u := range c.urls {
		s[i] = u.Redacted()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// chunkOutcome is what became of the documents of one bulk request.
type chunkOutcome struct {
	retry []int // documents to send again
	cause error // why they are sent again
}

// commit sends docs with external versions (version for those without a
// record version), in requests of at most maxBatchBytes, and sends again,
// after a backoff, the documents that failed with a retryable status, until
// every document is written or refused as a version conflict. It fails on
// the first document the server rejects for good (unless onRejected drops
// it), on a request it refuses, and when retries run out.
func (c *bulkClient) commit(ctx context.Context, docs []Doc, version int64) error {
	pending := make([]int, len(docs))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 1; ; attempt++ {
		var retry []int
		var cause error
		for len(pending) > 0 {
			n := c.chunkLen(docs, pending, version)
			out, err := c.send(ctx, docs, pending[:n], version)
			if err != nil {
				return err
			}
			if len(out.retry) > 0 {
				retry = append(retry, out.retry...)
				cause = out.cause
			}
			pending = pending[n:]
		}
		if len(retry) == 0 {
			return nil
		}
		if attempt >= c.cfg.retry.MaxAttempts {
			return fmt.Errorf("%w: bulk sink %q, %s: %d of %d documents still failing after %d attempts; last: %w",
				ErrUnavailable, c.sink, describeIndexes(docs, retry), len(retry), len(docs), attempt, cause)
		}
		c.retried += len(retry)
		c.cfg.log.Warn("search: bulk request failed in part, retrying", "sink", c.sink, "attempt", attempt,
			"documents", len(retry), "error", cause)
		if err := c.wait(ctx, attempt); err != nil {
			return fmt.Errorf("bulk sink %q, %s: %w", c.sink, describeIndexes(docs, retry), err)
		}
		pending = retry
	}
}

// actionLen is the length of a document's action line and source, newlines
// included, with a margin for escapes.
func actionLen(d *Doc) int {
	return len(d.Index) + len(d.ID) + len(d.Source) + 96
}

// chunkLen is how many of pending fit into one request: at least one.
func (c *bulkClient) chunkLen(docs []Doc, pending []int, version int64) int {
	size := 0
	for n, i := range pending {
		size += actionLen(&docs[i])
		if size > c.cfg.maxBatchBytes && n > 0 {
			return n
		}
	}
	return len(pending)
}

// appendAction appends the index action of d and its source:
//
//	{"index":{"_index":"x","_id":"y","version":7,"version_type":"external"}}
//	{...source...}
func appendAction(b []byte, d *Doc, version int64) []byte {
	if d.Version != 0 {
		version = d.Version
	}
	b = append(b, `{"index":{"_index":`...)
	b = appendJSONString(b, d.Index)
	b = append(b, `,"_id":`...)
	b = appendJSONString(b, d.ID)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, version, 10)
	b = append(b, `,"version_type":"external"}}`+"\n"...)
	b = append(b, d.Source...)
	return append(b, '\n')
}

// bulkSummary is the answer to a bulk request without the items' details.
type bulkSummary struct {
	Errors bool       `json:"errors"`
	Items  []struct{} `json:"items"`
}

// bulkResponse is the answer to a bulk request: one item per action, in
// the order of the actions.
type bulkResponse struct {
	Errors bool `json:"errors"`
	Items  []struct {
		Index *bulkItem `json:"index"`
	} `json:"items"`
}

type bulkItem struct {
	Index  string     `json:"_index"`
	ID     string     `json:"_id"`
	Status int        `json:"status"`
	Error  *bulkError `json:"error"`
}

type bulkError struct {
	Type     string     `json:"type"`
	Reason   string     `json:"reason"`
	CausedBy *bulkError `json:"caused_by"`
}

func (e *bulkError) String() string {
	if e == nil {
		return "no error details"
	}
	s := e.Type + ": " + e.Reason
	if e.CausedBy != nil {
		s += " (caused by " + e.CausedBy.String() + ")"
	}
	return s
}

// describeErrorBody summarizes an error answer: {"error":{...},"status":N},
// or its text.
func describeErrorBody(body []byte) string {
	var r struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &r) == nil && len(r.Error) > 0 {
		var e bulkError
		if json.Unmarshal(r.Error, &e) == nil && e.Type != "" {
			return e.String()
		}
		var s string
		if json.Unmarshal(r.Error, &s) == nil {
			return s
		}
	}
	if len(body) == 0 {
		return "empty response"
	}
	return fmt.Sprintf("%.200q", body)
}

// describeIndexes names the indexes of some documents, for errors.
func describeIndexes(docs []Doc, which []int) string {
	var names []string
	for _, i := range which {
		if !slices.Contains(names, docs[i].Index) {
			names = append(names, docs[i].Index)
			if len(names) == 3 {
				break
			}
		}
	}
	if len(names) == 1 {
		return fmt.Sprintf("index %q", names[0])
	}
	return fmt.Sprintf("indexes %q", names)
}

// send posts one bulk request with the documents which. An error means the
// commit fails; documents to try again are in the outcome.
func (c *bulkClient) send(ctx context.Context, docs []Doc, which []int, version int64) (chunkOutcome, error) {
	size := 0
	for _, i := range which {
		size += actionLen(&docs[i])
	}
	body := make([]byte, 0, size)
	for _, i := range which {
		body = appendAction(body, &docs[i], version)
	}
	path := "/_bulk"
	if c.cfg.refresh != "" {
		path += "?refresh=" + c.cfg.refresh
	}
	status, resp, err := c.do(ctx, http.MethodPost, path, body)
	switch {
	case err != nil && ctx.Err() != nil:
		return chunkOutcome{}, fmt.Errorf("bulk sink %q, %s: %w", c.sink, describeIndexes(docs, which), ctx.Err())
	case isCertificateError(err):
		return chunkOutcome{}, fmt.Errorf("%w: bulk sink %q, %s: %w (set BulkConfig.TLS)", ErrRequest, c.sink, describeIndexes(docs, which), err)
	case err != nil:
		c.nextNode()
		return chunkOutcome{retry: which, cause: err}, nil
	case status == http.StatusRequestEntityTooLarge && len(which) > 1:
		// The node's http.max_content_length is below MaxBatchBytes: halve.
		c.cfg.log.Warn("search: bulk request too large, splitting it", "sink", c.sink, "bytes", len(body), "documents", len(which))
		a, err := c.send(ctx, docs, which[:len(which)/2], version)
		if err != nil {
			return a, err
		}
		b, err := c.send(ctx, docs, which[len(which)/2:], version)
		if err != nil {
			return b, err
		}
		if b.cause == nil {
			b.cause = a.cause
		}
		return chunkOutcome{retry: append(a.retry, b.retry...), cause: b.cause}, nil
	case status == http.StatusRequestEntityTooLarge:
		d := &docs[which[0]]
		return chunkOutcome{}, c.reject(ctx, d, version, status, &bulkError{Type: "request_entity_too_large",
			Reason: fmt.Sprintf("a bulk request of this document alone (%d bytes) is larger than the node accepts (http.max_content_length)", len(body))})
	case retryableStatus(status):
		c.nextNode()
		return chunkOutcome{retry: which, cause: fmt.Errorf("POST %s: %d %s", c.endpoint("/_bulk"), status, describeErrorBody(resp))}, nil
	case status != http.StatusOK:
		hint := ""
		if status == http.StatusUnauthorized || status == http.StatusForbidden {
			hint = " (check the credentials and the user's permission to index)"
		}
		return chunkOutcome{}, fmt.Errorf("%w: bulk sink %q, %s: POST %s: %d %s%s",
			ErrRequest, c.sink, describeIndexes(docs, which), c.endpoint("/_bulk"), status, describeErrorBody(resp), hint)
	}
	// Mostly every item succeeded: count the items without decoding them,
	// and decode them only if some failed.
	var summary bulkSummary
	err = json.Unmarshal(resp, &summary)
	var r bulkResponse
	if err == nil && summary.Errors {
		err = json.Unmarshal(resp, &r)
	}
	if err != nil {
		return chunkOutcome{}, fmt.Errorf("%w: bulk sink %q, %s: POST %s: unreadable response: %v: %.200q",
			ErrRequest, c.sink, describeIndexes(docs, which), c.endpoint("/_bulk"), err, resp)
	}
	if len(summary.Items) != len(which) {
		return chunkOutcome{}, fmt.Errorf("%w: bulk sink %q, %s: POST %s: the response has %d items for %d actions",
			ErrRequest, c.sink, describeIndexes(docs, which), c.endpoint("/_bulk"), len(summary.Items), len(which))
	}
	if !summary.Errors {
		return chunkOutcome{}, nil
	}
	var out chunkOutcome
	for k, i := range which {
		it := r.Items[k].Index
		if it == nil {
			return chunkOutcome{}, fmt.Errorf("%w: bulk sink %q, index %q, _id %q: response item %d is not an index result",
				ErrRequest, c.sink, docs[i].Index, docs[i].ID, k)
		}
		switch {
		case it.Status >= 200 && it.Status < 300:
		case it.Status == http.StatusConflict && it.Error != nil && it.Error.Type == "version_conflict_engine_exception":
			// The index holds this version or a newer one: a replay.
			c.conflicts++
		case retryableStatus(it.Status):
			out.retry = append(out.retry, i)
			out.cause = fmt.Errorf("index %q, _id %q: %d %s", docs[i].Index, docs[i].ID, it.Status, it.Error)
		default:
			if err := c.reject(ctx, &docs[i], version, it.Status, it.Error); err != nil {
				return chunkOutcome{}, err
			}
		}
	}
	return out, nil
}

// reject hands a document the server refused to onRejected, or fails.
func (c *bulkClient) reject(ctx context.Context, d *Doc, version int64, status int, e *bulkError) error {
	if d.Version != 0 {
		version = d.Version
	}
	if e == nil {
		e = &bulkError{}
	}
	r := Rejection{Index: d.Index, ID: d.ID, Version: version, Status: status, Type: e.Type, Reason: e.String(), Source: d.Source}
	if e.Type != "" {
		r.Reason = strings.TrimPrefix(r.Reason, e.Type+": ")
	}
	if c.cfg.onRejected == nil {
		return fmt.Errorf("%w: bulk sink %q, %s", ErrDocument, c.sink, r)
	}
	if err := c.cfg.onRejected(ctx, r); err != nil {
		return fmt.Errorf("bulk sink %q, %s: OnRejected: %w", c.sink, r, err)
	}
	return nil
}
