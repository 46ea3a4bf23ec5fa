package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sluicedata/sluice/jobs/runner"
)

// progressBar shows a replay's progress: records read of the backlog,
// rate and time left. On a terminal it redraws one line; otherwise it
// prints a line every few seconds.
type progressBar struct {
	w      io.Writer
	total  int64 // -1 if unknown
	tty    bool
	every  time.Duration
	start  time.Time
	mu     sync.Mutex
	done   chan struct{}
	closed bool
}

func newProgress(w io.Writer, total int64) *progressBar {
	p := &progressBar{w: w, total: total, every: 2 * time.Second, start: time.Now(), done: make(chan struct{})}
	if lw, ok := w.(*lockedWriter); ok {
		w = lw.w
	}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.every = true, 250*time.Millisecond
		}
	}
	return p
}

// follow draws the deployment's progress until finish is called.
func (p *progressBar) follow(d *runner.Deployment) {
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			p.draw(d.Status().RecordsIn, false)
		case <-p.done:
			return
		case <-d.Done():
			return
		}
	}
}

// finish draws the last line: complete if the job read its input to the end.
func (p *progressBar) finish(d *runner.Deployment, complete bool) {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	p.mu.Unlock()
	p.draw(d.Status().RecordsIn, complete)
}

func (p *progressBar) draw(n int64, last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	el := time.Since(p.start)
	rate := float64(n) / max(el.Seconds(), 1e-9)
	line := fmt.Sprintf("replay: %d records", n)
	if last && p.total >= 0 {
		// The job ended: its sources read to the end. Records that did not
		// decode (dead-lettered or skipped) are sequences without a record.
		line = fmt.Sprintf("replay: %d of %d sequences (100%%), %d records", p.total, p.total, n)
	} else if p.total >= 0 {
		pct := 100.0
		if p.total > 0 {
			pct = min(100, 100*float64(n)/float64(p.total))
		}
		line = fmt.Sprintf("replay: %d of %d sequences (%.1f%%)", n, p.total, pct)
	}
	line += fmt.Sprintf(", %.0f/s", rate)
	if p.total > 0 && rate > 0 && n < p.total && !last {
		left := time.Duration(float64(p.total-n) / rate * float64(time.Second))
		line += fmt.Sprintf(", %v left", left.Round(time.Second))
	} else if last {
		line += fmt.Sprintf(", done in %v", el.Round(time.Millisecond))
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		if last {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}
