package search_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeOpenSearch is an in-process HTTP server implementing the parts of the
// OpenSearch REST API the bulk sink uses, after the request and response
// formats of the OpenSearch documentation (api-reference/document-apis/bulk,
// and the index API's external versioning):
//
//   - GET / answers the cluster information.
//   - POST /_bulk takes NDJSON: an action line, {"index":{"_index",
//     "_id","version","version_type"}}, then the document's source line;
//     every line ends with "\n". It answers {"took","errors","items"}, one
//     item per action in order: {"index":{"_index","_id","_version",
//     "result","_shards","_seq_no","_primary_term","status"}}, or with
//     "status" and "error":{"type","reason","index","shard","index_uuid"}.
//   - External versions: a document is stored only if its version is higher
//     than the stored one; otherwise the item is 409
//     version_conflict_engine_exception.
//   - Fields listed in longFields are mapped as long: a value that is not a
//     number fails the item with 400 mapper_parsing_exception.
//   - A body over maxContentLength is answered 413; a request without the
//     right basic credentials 401 security_exception.
//
// Faults are scripted per request (requestFault) and per item (itemFault).
type fakeOpenSearch struct {
	t   testing.TB
	srv *httptest.Server

	mu               sync.Mutex
	docs             map[string]map[string]storedDoc // index, id
	seqNo            int64
	user, password   string
	longFields       map[string]bool
	maxContentLength int
	// requestFault, if set, may answer the n-th bulk request (from 1)
	// with a status and body instead of processing it.
	requestFault func(n int) (status int, body string)
	// itemFault, if set, may fail an item with a status, error type and
	// reason; attempt counts the times this _id was received (from 1).
	itemFault func(index, id string, attempt int) (status int, typ, reason string)

	bulkRequests int
	bodies       []string // every bulk body received
	contentTypes []string
	received     map[string]int // _id -> times received
	conflicts    int
}

type storedDoc struct {
	Version int64
	Source  map[string]any
}

func newFakeOpenSearch(t testing.TB) *fakeOpenSearch {
	f := &fakeOpenSearch{t: t, docs: map[string]map[string]storedDoc{}, received: map[string]int{}, longFields: map[string]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpenSearch) URL() string { return f.srv.URL }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errorBody is OpenSearch's error answer.
func errorBody(status int, typ, reason string) map[string]any {
	e := map[string]any{"type": typ, "reason": reason}
	return map[string]any{"error": map[string]any{"root_cause": []any{e}, "type": typ, "reason": reason}, "status": status}
}

func (f *fakeOpenSearch) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.user != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != f.user || p != f.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="OpenSearch Security"`)
			writeJSON(w, http.StatusUnauthorized, errorBody(401, "security_exception", "Unauthorized"))
			return
		}
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		writeJSON(w, http.StatusOK, map[string]any{
			"name": "fake-node", "cluster_name": "fake", "cluster_uuid": "0000",
			"version": map[string]any{"distribution": "opensearch", "number": "2.19.0"},
			"tagline": "The OpenSearch Project: https://opensearch.org/",
		})
	case (r.Method == http.MethodPost || r.Method == http.MethodPut) && r.URL.Path == "/_bulk":
		f.bulk(w, r)
	default:
		writeJSON(w, http.StatusNotFound, errorBody(404, "no_handler_found_exception", fmt.Sprintf("no handler found for uri [%s] and method [%s]", r.URL.Path, r.Method)))
	}
}

func (f *fakeOpenSearch) bulk(w http.ResponseWriter, r *http.Request) {
	f.bulkRequests++
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(400, "parse_exception", err.Error()))
		return
	}
	f.bodies = append(f.bodies, string(body))
	ct := r.Header.Get("Content-Type")
	f.contentTypes = append(f.contentTypes, ct)
	if f.requestFault != nil {
		if status, b := f.requestFault(f.bulkRequests); status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, b)
			return
		}
	}
	if f.maxContentLength > 0 && len(body) > f.maxContentLength {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	if !strings.HasPrefix(ct, "application/x-ndjson") && !strings.HasPrefix(ct, "application/json") {
		writeJSON(w, http.StatusNotAcceptable, errorBody(406, "illegal_argument_exception", fmt.Sprintf("Content-Type header [%s] is not supported", ct)))
		return
	}
	if len(body) == 0 || body[len(body)-1] != '\n' {
		writeJSON(w, http.StatusBadRequest, errorBody(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"))
		return
	}
	var items []map[string]any
	errors := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 64<<20)
	line := 0
	for sc.Scan() {
		line++
		var action map[string]map[string]any
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || len(action) != 1 {
			writeJSON(w, http.StatusBadRequest, errorBody(400, "illegal_argument_exception", fmt.Sprintf("Malformed action/metadata line [%d], expected a simple value for field [_index] but found [%s]", line, sc.Text())))
			return
		}
		meta, ok := action["index"]
		if !ok {
			writeJSON(w, http.StatusBadRequest, errorBody(400, "illegal_argument_exception", fmt.Sprintf("Malformed action/metadata line [%d]: only index actions are served here", line)))
			return
		}
		for k := range meta {
			switch k {
			case "_index", "_id", "version", "version_type":
			default:
				writeJSON(w, http.StatusBadRequest, errorBody(400, "illegal_argument_exception", fmt.Sprintf("Action/metadata line [%d] contains an unknown parameter [%s]", line, k)))
				return
			}
		}
		if !sc.Scan() {
			writeJSON(w, http.StatusBadRequest, errorBody(400, "illegal_argument_exception", fmt.Sprintf("Validation Failed: 1: source is missing for action on line [%d];", line)))
			return
		}
		line++
		item := f.index(meta, sc.Bytes())
		if _, failed := item["error"]; failed {
			errors = true
		}
		items = append(items, map[string]any{"index": item})
	}
	writeJSON(w, http.StatusOK, map[string]any{"took": 3, "errors": errors, "items": items})
}

// index applies one index action and returns its response item.
func (f *fakeOpenSearch) index(meta map[string]any, source []byte) map[string]any {
	index, _ := meta["_index"].(string)
	id, _ := meta["_id"].(string)
	fail := func(status int, typ, reason string) map[string]any {
		return map[string]any{"_index": index, "_id": id, "status": status,
			"error": map[string]any{"type": typ, "reason": reason, "index": index, "shard": "0", "index_uuid": "fAkEuUiD"}}
	}
	f.received[id]++
	if f.itemFault != nil {
		if status, typ, reason := f.itemFault(index, id, f.received[id]); status != 0 {
			return fail(status, typ, reason)
		}
	}
	version, ok := meta["version"].(float64)
	if !ok || meta["version_type"] != "external" || version < 1 {
		return fail(400, "action_request_validation_exception", "Validation Failed: 1: illegal version value [0] for version type [EXTERNAL];")
	}
	var src map[string]any
	if err := json.Unmarshal(source, &src); err != nil {
		return fail(400, "mapper_parsing_exception", "failed to parse")
	}
	for field := range f.longFields {
		switch v := src[field].(type) {
		case nil, float64:
		default:
			return map[string]any{"_index": index, "_id": id, "status": 400, "error": map[string]any{
				"type":   "mapper_parsing_exception",
				"reason": fmt.Sprintf("failed to parse field [%s] of type [long] in document with id '%s'. Preview of field's value: '%v'", field, id, v),
				"index":  index, "shard": "0", "index_uuid": "fAkEuUiD",
				"caused_by": map[string]any{"type": "illegal_argument_exception", "reason": fmt.Sprintf("For input string: \"%v\"", v)},
			}}
		}
	}
	docs := f.docs[index]
	if docs == nil {
		docs = map[string]storedDoc{}
		f.docs[index] = docs
	}
	v := int64(version)
	old, exists := docs[id]
	if exists && old.Version >= v {
		f.conflicts++
		return fail(409, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, current version [%d] is higher or equal to the one provided [%d]", id, old.Version, v))
	}
	docs[id] = storedDoc{Version: v, Source: src}
	f.seqNo++
	result, status := "created", 201
	if exists {
		result, status = "updated", 200
	}
	return map[string]any{"_index": index, "_id": id, "_version": v, "result": result,
		"_shards": map[string]any{"total": 2, "successful": 1, "failed": 0}, "_seq_no": f.seqNo, "_primary_term": 1, "status": status}
}

// ids returns the sorted ids stored in index.
func (f *fakeOpenSearch) ids(index string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := []string{}
	for id := range f.docs[index] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (f *fakeOpenSearch) doc(index, id string) (storedDoc, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.docs[index][id]
	return d, ok
}

// stats returns the bulk requests received and the version conflicts
// answered.
func (f *fakeOpenSearch) stats() (requests, conflicts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bulkRequests, f.conflicts
}

func (f *fakeOpenSearch) lastBody() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		return ""
	}
	return f.bodies[len(f.bodies)-1]
}

// set changes the fake's settings under its lock.
func (f *fakeOpenSearch) set(fn func(f *fakeOpenSearch)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}
