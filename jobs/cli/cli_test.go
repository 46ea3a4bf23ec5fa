package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sluicedata/sluice/jobs"
	"github.com/sluicedata/sluice/jobs/cli"
	"github.com/sluicedata/sluice/jobs/viewcount"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cli.Main(context.Background(), jobs.Default, args, &out, &errb)
	return code, out.String(), errb.String()
}

// expectedTop computes the viewcount result with a plain loop over the same views.
func expectedTop(events, videos int64, top int) (lines []string, invalid int64) {
	counts := map[string]int64{}
	for seq := int64(0); seq < events; seq++ {
		v := viewcount.GenerateView(seq, videos)
		if v.Video == "" {
			invalid++
			continue
		}
		counts[v.Video]++
	}
	type kv struct {
		k string
		n int64
	}
	var all []kv
	for k, n := range counts {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].k < all[j].k
	})
	for i := 0; i < top && i < len(all); i++ {
		lines = append(lines, fmt.Sprintf("top> #%d %s: %d views", i+1, all[i].k, all[i].n))
	}
	return lines, invalid
}

func TestRunViewcountMatchesBatchComputation(t *testing.T) {
	want, invalid := expectedTop(50_000, 500, 5)
	for _, p := range []string{"1", "3"} {
		code, out, errOut := run("run", "viewcount", "--parallelism", p, "--set", "events=50000", "--set", "videos=500", "--set", "top=5")
		require.Equal(t, cli.ExitOK, code, errOut)
		require.Contains(t, errOut, `job "viewcount" finished in`)
		var tops []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(l, "top> ") {
				tops = append(tops, l)
			}
		}
		require.Equal(t, want, tops, "parallelism %s", p)
		require.Contains(t, out, fmt.Sprintf("skipped> %d views without a video id\n", invalid))
	}
}

func TestJobsAndPlan(t *testing.T) {
	code, out, _ := run("jobs")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "viewcount")
	require.Contains(t, out, "--set events=1000000")

	code, out, _ = run("plan", "viewcount", "--parallelism", "2")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, out, "exchange hash: validate => views-per-video")

	code, out, _ = run("plan", "viewcount", "--format", "json")
	require.Equal(t, cli.ExitOK, code)
	var plan map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &plan))
	require.Equal(t, "viewcount", plan["job"])

	code, out, _ = run("plan", "viewcount", "--format", "dot")
	require.Equal(t, cli.ExitOK, code)
	require.True(t, strings.HasPrefix(out, `digraph "viewcount"`))
}

func TestBadInputIsOneLineAndNonZero(t *testing.T) {
	cases := []struct {
		args []string
		code int
		says string
	}{
		{nil, cli.ExitUsage, "usage: jobrunner"},
		{[]string{"launch"}, cli.ExitUsage, `jobrunner launch: unknown verb "launch"`},
		{[]string{"run"}, cli.ExitUsage, "jobrunner run: missing job name"},
		{[]string{"run", "nope"}, cli.ExitUsage, `jobrunner run: jobs: unknown job "nope" (registered: [clickstream viewcount])`},
		{[]string{"run", "viewcount", "--parallelism", "0"}, cli.ExitUsage, "--parallelism 0 must be between 1 and --max-parallelism 128"},
		{[]string{"run", "viewcount", "--parallelism", "x"}, cli.ExitUsage, `invalid value "x" for flag -parallelism`},
		{[]string{"run", "viewcount", "--bogus"}, cli.ExitUsage, "flag provided but not defined: -bogus"},
		{[]string{"run", "viewcount", "--set", "color=red"}, cli.ExitUsage, `job "viewcount" has no parameter "color"`},
		{[]string{"run", "viewcount", "--set", "events=many"}, cli.ExitUsage, `job "viewcount": parameter events="many": not an integer`},
		{[]string{"run", "viewcount", "--set", "videos=0"}, cli.ExitUsage, `videos (0) and top (10) > 0`},
		{[]string{"run", "viewcount", "extra"}, cli.ExitUsage, `unexpected arguments ["extra"]`},
		{[]string{"plan", "viewcount", "--format", "svg"}, cli.ExitUsage, `--format "svg": want text, dot or json`},
	}
	for _, c := range cases {
		code, _, errOut := run(c.args...)
		require.Equal(t, c.code, code, "%q", c.args)
		require.Contains(t, errOut, c.says, "%q", c.args)
		if len(c.args) > 0 {
			require.Equal(t, 1, strings.Count(errOut, "\n"), "one line for %q: %q", c.args, errOut)
		}
	}
}

func TestInterruptedRunStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := cli.Main(ctx, jobs.Default, []string{"run", "viewcount", "--set", "rate=1000"}, &out, &errb)
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, errb.String(), `job "viewcount" interrupted after`)
}
