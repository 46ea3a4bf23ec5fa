package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicedata/sluice/jobs/cluster"
	"github.com/sluicedata/sluice/jobs/runner"
)

// client talks to a runner's REST API.
type client struct {
	base string
	http *http.Client
}

func runnerURL(flagValue string) (string, error) {
	u := flagValue
	if u == "" {
		u = os.Getenv("SLUICE_RUNNER")
	}
	if u == "" {
		u = "http://" + DefaultRunnerAddr
	}
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return "", usageError{fmt.Errorf("--runner %q: want a URL such as http://127.0.0.1:8081", u)}
	}
	return strings.TrimRight(u, "/"), nil
}

// do sends a request and decodes a 2xx JSON answer into out.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("runner at %s unreachable: %w (start one with 'jobrunner serve', or give --runner)", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("runner at %s: reading the answer: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb runner.ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", eb.Error, resp.StatusCode)
		}
		return fmt.Errorf("runner at %s: %s %s: HTTP %d: %s", c.base, method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("runner at %s: %s %s: bad answer: %w", c.base, method, path, err)
	}
	return nil
}

// manage runs the verbs that talk to a runner.
func manage(ctx context.Context, verb string, args []string, stdout io.Writer) error {
	var (
		runnerFlag string
		asJSON     bool
		dir        string
		drain      bool
		parallel   int
		rest       []string
		spec       *runner.Spec
	)
	if verb == "deploy" {
		// deploy takes the job flags, plus --runner and --json.
		var jobArgs []string
		for i := 0; i < len(args); i++ {
			a := args[i]
			switch {
			case a == "--runner" || a == "-runner":
				if i+1 >= len(args) {
					return usageError{errors.New("--runner needs a URL")}
				}
				runnerFlag = args[i+1]
				i++
			case strings.HasPrefix(a, "--runner=") || strings.HasPrefix(a, "-runner="):
				runnerFlag = a[strings.Index(a, "=")+1:]
			case a == "--json" || a == "-json":
				asJSON = true
			default:
				jobArgs = append(jobArgs, a)
			}
		}
		jf, err := parseJob("deploy", jobArgs)
		if err != nil {
			return err
		}
		spec = &jf.spec
	} else {
		fs := newFlagSet(verb)
		fs.StringVar(&runnerFlag, "runner", "", "")
		fs.BoolVar(&asJSON, "json", false, "")
		switch verb {
		case "savepoint":
			fs.StringVar(&dir, "dir", "", "")
		case "stop":
			fs.StringVar(&dir, "dir", "", "")
			fs.BoolVar(&drain, "drain", false, "")
		case "rescale":
			fs.IntVar(&parallel, "parallelism", 0, "")
		}
		// The deployment name may come before or after the flags.
		var name []string
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			name, args = args[:1], args[1:]
		}
		if err := fs.Parse(args); err != nil {
			return usageError{err}
		}
		rest = append(name, fs.Args()...)
		want := 1
		if verb == "list" || verb == "nodes" {
			want = 0
		}
		if len(rest) != want {
			if want == 0 {
				return usageError{fmt.Errorf("takes no arguments, got %q", rest)}
			}
			return usageError{fmt.Errorf("needs one deployment name (see 'jobrunner list'), got %q", rest)}
		}
		if verb == "rescale" && parallel < 1 {
			return usageError{fmt.Errorf("needs --parallelism N, at least 1 (got %d)", parallel)}
		}
		if drain && dir != "" {
			return usageError{errors.New("--drain ends with a final checkpoint in the deployment's checkpoint directory: drop --dir")}
		}
	}
	base, err := runnerURL(runnerFlag)
	if err != nil {
		return err
	}
	c := &client{base: base, http: &http.Client{Timeout: 15 * time.Minute}}
	path := func(p ...string) string {
		parts := []string{runner.PathJobs}
		for _, s := range p {
			parts = append(parts, url.PathEscape(s))
		}
		return strings.Join(parts, "/")
	}
	var raw json.RawMessage
	switch verb {
	case "deploy":
		if err := c.do(ctx, http.MethodPost, runner.PathJobs, spec, &raw); err != nil {
			return err
		}
		return printStatus(stdout, raw, asJSON)
	case "nodes":
		if err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, &raw); err != nil {
			if strings.Contains(err.Error(), "HTTP 404") {
				return fmt.Errorf("the runner at %s is not a cluster node (start it with 'jobrunner serve --node-id ID --raft-addr ADDR --data-dir DIR')", base)
			}
			return err
		}
		if asJSON {
			_, err := fmt.Fprintf(stdout, "%s", raw)
			return err
		}
		var ns []cluster.NodeStatus
		if err := json.Unmarshal(raw, &ns); err != nil {
			return fmt.Errorf("runner at %s: GET /v1/nodes: bad answer: %w", base, err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tSTATE\tLEADER\tSLOTS\tUSED\tRAFT\tAPI")
		for _, n := range ns {
			st, lead := "up", ""
			if !n.Up {
				st = "down"
			}
			if n.Leader {
				lead = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", n.ID, st, lead, n.Slots, n.Used, n.RaftAddr, n.APIAddr)
		}
		return tw.Flush()
	case "list":
		if err := c.do(ctx, http.MethodGet, runner.PathJobs, nil, &raw); err != nil {
			return err
		}
		if asJSON {
			_, err := fmt.Fprintf(stdout, "%s", raw)
			return err
		}
		var sts []runner.Status
		if err := json.Unmarshal(raw, &sts); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tJOB\tSTATE\tUPTIME\tRECORDS/S\tLAG\tLAST CHECKPOINT")
		for _, s := range sts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%s\t%s\n", s.Name, s.Job, s.State, secs(s.Uptime), s.RecordsPerSecond, lag(s.WatermarkLag), lastCkpt(s))
		}
		return tw.Flush()
	case "status":
		if err := c.do(ctx, http.MethodGet, path(rest[0]), nil, &raw); err != nil {
			return err
		}
		return printStatus(stdout, raw, asJSON)
	case "checkpoints":
		if err := c.do(ctx, http.MethodGet, path(rest[0], "checkpoints"), nil, &raw); err != nil {
			return err
		}
		if asJSON {
			_, err := fmt.Fprintf(stdout, "%s", raw)
			return err
		}
		var cs []runner.CheckpointSummary
		if err := json.Unmarshal(raw, &cs); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tCREATED\tFILES\tBYTES\tFINAL")
		for _, s := range cs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%v\n", s.ID, s.Kind, s.Created.Format(time.RFC3339), s.Files, s.Bytes, s.Final)
		}
		return tw.Flush()
	case "savepoint", "stop":
		var body any = runner.SavepointRequest{Dir: dir}
		if verb == "stop" {
			body = runner.StopRequest{Drain: drain, Dir: dir}
		}
		var res runner.SavepointResult
		if err := c.do(ctx, http.MethodPost, path(rest[0], verb), body, &res); err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(stdout).Encode(res)
		}
		switch {
		case res.Final && res.Path != "":
			fmt.Fprintf(stdout, "%s drained; final checkpoint %d in %s\n", res.Deployment, res.ID, res.Path)
		case res.Final:
			fmt.Fprintf(stdout, "%s drained (it keeps no checkpoints)\n", res.Deployment)
		case verb == "stop":
			fmt.Fprintf(stdout, "%s stopped; savepoint %d in %s\n", res.Deployment, res.ID, res.Path)
		default:
			fmt.Fprintf(stdout, "savepoint %d of %s in %s\n", res.ID, res.Deployment, res.Path)
		}
		return nil
	case "cancel":
		if err := c.do(ctx, http.MethodPost, path(rest[0], "cancel"), nil, &raw); err != nil {
			return err
		}
		return printStatus(stdout, raw, asJSON)
	case "rescale":
		if err := c.do(ctx, http.MethodPost, path(rest[0], "rescale"), runner.RescaleRequest{Parallelism: parallel}, &raw); err != nil {
			return err
		}
		return printStatus(stdout, raw, asJSON)
	}
	return usageError{fmt.Errorf("unknown verb %q", verb)}
}

func printStatus(w io.Writer, raw json.RawMessage, asJSON bool) error {
	if asJSON {
		_, err := fmt.Fprintf(w, "%s", raw)
		return err
	}
	var s runner.Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", s.Name)
	fmt.Fprintf(tw, "job:\t%s\n", s.Job)
	fmt.Fprintf(tw, "state:\t%s\n", s.State)
	if s.Node != "" {
		fmt.Fprintf(tw, "node:\t%s\n", s.Node)
	}
	if s.Waiting != "" {
		fmt.Fprintf(tw, "waiting:\t%s\n", s.Waiting)
	}
	fmt.Fprintf(tw, "uptime:\t%s\n", secs(s.Uptime))
	fmt.Fprintf(tw, "records read:\t%d\n", s.RecordsIn)
	fmt.Fprintf(tw, "records/s:\t%.0f\n", s.RecordsPerSecond)
	fmt.Fprintf(tw, "watermark lag:\t%s\n", lag(s.WatermarkLag))
	fmt.Fprintf(tw, "restarts:\t%d\n", s.Restarts)
	fmt.Fprintf(tw, "checkpoints:\t%d completed, %d failed\n", s.CheckpointsCompleted, s.CheckpointsFailed)
	fmt.Fprintf(tw, "last checkpoint:\t%s\n", lastCkpt(s))
	if s.Savepoint != "" {
		fmt.Fprintf(tw, "savepoint:\t%s\n", s.Savepoint)
	}
	if s.Error != "" {
		fmt.Fprintf(tw, "error:\t%s\n", s.Error)
	}
	return tw.Flush()
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

func lag(l *float64) string {
	if l == nil {
		return "-"
	}
	return time.Duration(*l * float64(time.Second)).Round(time.Millisecond).String()
}

func lastCkpt(s runner.Status) string {
	c := s.LastCheckpoint
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%d (%s, %s ago, %v, %d bytes)", c.ID, c.Kind, time.Since(c.Started.Add(c.Duration)).Round(time.Second),
		c.Duration.Round(time.Millisecond), c.Size)
}
