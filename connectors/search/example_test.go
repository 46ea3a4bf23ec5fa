package search_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluicedata/sluice/connectors/memory"
	"github.com/sluicedata/sluice/connectors/search"
	"github.com/sluicedata/sluice/dataflow"
)

type video struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Views int    `json:"views"`
}

// A bounded job indexes videos into a Bleve index; the final checkpoint at
// end of input commits them, and Search queries the index.
func ExampleBleveSink() {
	dir, _ := os.MkdirTemp("", "videos")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "index")

	job := dataflow.NewJob("index-videos")
	videos := memory.FromSlice(job, "videos", []video{
		{"v1", "Rivers of the north", 120},
		{"v2", "Cooking with rivers fish", 45},
		{"v3", "Mountain trains", 300},
	})
	search.BleveSink(videos, "video-index", search.BleveConfig[video]{
		Path: path,
		ID:   func(v video) string { return v.ID }, // a replay overwrites, never duplicates
	})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	res, err := search.Search(context.Background(), path, "title:rivers views:>100", 10)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("matches:", res.Total)
	for _, h := range res.Hits {
		fmt.Println(h.ID, h.Fields["title"], h.Fields["views"])
	}
	// Output:
	// matches: 3
	// v1 Rivers of the north 120
	// v2 Cooking with rivers fish 45
	// v3 Mountain trains 300
}

// Several queries share one open index.
func ExampleOpenIndex() {
	dir, _ := os.MkdirTemp("", "videos")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "index")
	job := dataflow.NewJob("index-videos")
	videos := memory.FromSlice(job, "videos", []video{{"v1", "Rivers", 120}, {"v2", "Trains", 300}})
	search.BleveSink(videos, "video-index", search.BleveConfig[video]{Path: path, ID: func(v video) string { return v.ID }})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}

	ix, err := search.OpenIndex(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ix.Close()
	for _, q := range []string{"*", "trains", "views:<200"} {
		res, err := ix.Search(context.Background(), q, 10)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%q: %d\n", q, res.Total)
	}
	// Output:
	// "*": 2
	// "trains": 1
	// "views:<200": 1
}

// The bulk sink posts each epoch's documents to /_bulk when its checkpoint
// completes, as index actions with a deterministic _id and an external
// version. The server here stands in for an OpenSearch cluster: it prints
// each action and answers every item 201 created.
func ExampleBulkSink() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_bulk" { // the sink's start-up check: GET /
			_, _ = io.WriteString(w, `{"version":{"distribution":"opensearch","number":"2.19.0"}}`)
			return
		}
		var items []string
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			action := sc.Text()
			sc.Scan() // the document
			fmt.Printf("%s\n  %s\n", action, sc.Text())
			var a struct{ Index map[string]any }
			_ = json.Unmarshal([]byte(action), &a)
			items = append(items, fmt.Sprintf(`{"index":{"_index":%q,"_id":%q,"result":"created","status":201}}`, a.Index["_index"], a.Index["_id"]))
		}
		fmt.Fprintf(w, `{"took":1,"errors":false,"items":[%s]}`, strings.Join(items, ","))
	}))
	defer srv.Close()

	job := dataflow.NewJob("index-videos")
	videos := memory.FromSlice(job, "videos", []video{{"v1", "Rivers", 120}, {"v2", "Trains", 300}})
	search.BulkSink(videos, "video-index", search.BulkConfig[video]{
		URLs:    []string{srv.URL},
		Index:   "videos",
		ID:      func(v video) string { return v.ID },
		Version: func(v video) int64 { return int64(v.Views) }, // view counts only grow
	})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"index":{"_index":"videos","_id":"v1","version":120,"version_type":"external"}}
	//   {"id":"v1","title":"Rivers","views":120}
	// {"index":{"_index":"videos","_id":"v2","version":300,"version_type":"external"}}
	//   {"id":"v2","title":"Trains","views":300}
}
