package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/sluicedata/sluice/jobs/cluster"
	"github.com/sluicedata/sluice/jobs/runner"
)

// A cluster of one node: it elects itself, registers, and assigns a
// deployment's subtasks to its slots.
func Example() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dir, _ := os.MkdirTemp("", "cluster")
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := cluster.Start(ctx, cluster.Config{NodeID: "n1", RaftAddr: "127.0.0.1:0",
		APIAddr: ln.Addr().String(), DataDir: dir, Slots: 4,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	srv := &http.Server{Handler: node.Handler()}
	go srv.Serve(ln)
	defer srv.Close()

	changed, stop := node.Watch()
	defer stop()
	// The cluster has slots once the node has registered them: until then
	// it refuses any deployment (cluster.ErrNotEnoughSlots).
	for m := node.State().Nodes["n1"]; m == nil || !m.Up; m = node.State().Nodes["n1"] {
		<-changed
	}
	err = node.Apply(ctx, &cluster.Command{Op: cluster.OpDeploy, Deployment: &cluster.Deployment{
		Spec: runner.Spec{Job: "clickstream", Parallelism: 2}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The leader assigns the subtasks right after the deploy applies.
	for a := node.State().Assignments["clickstream"]; len(a) == 0 || slices.Contains(a, ""); a = node.State().Assignments["clickstream"] {
		<-changed
	}
	// A deployment larger than the cluster is refused.
	err = node.Apply(ctx, &cluster.Command{Op: cluster.OpDeploy, Deployment: &cluster.Deployment{
		Spec: runner.Spec{Job: "clickstream", Name: "big", Parallelism: 5}}})
	fmt.Println(err)
	fmt.Println(node.State().Assignments["clickstream"])
	for _, m := range node.Nodes() {
		fmt.Println(m.ID, "slots", m.Slots, "used", m.Used, "leader", m.Leader)
	}
	// Output:
	// cluster: not enough slots: deployment "big" has parallelism 5, the cluster's up nodes have 4 slots
	// [n1 n1]
	// n1 slots 4 used 2 leader true
}
