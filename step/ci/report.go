package ci

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Outcome is what a command reports at its end: the values CI exposes as outputs (GitHub step
// outputs, GitLab dotenv variables) and shows in summaries.
type Outcome struct {
	Command     string
	Environment string
	// Changed is true when the config repo got a new commit.
	Changed bool
	// CommitSHA and CommitURL identify the config commit (the new one, or the current tip).
	CommitSHA, CommitURL string
	// Images are the image references set, pinned (name=repo:tag@digest).
	Images []string
	// ImageDigest is the digest of the first image, for single-image pipelines.
	ImageDigest string
	// URL is the environment's URL when known.
	URL string
	// PullRequestURL and PullRequestNumber identify the pull (merge) request that carries the
	// change, in pull-request mode.
	PullRequestURL    string
	PullRequestNumber int
	// Applied and Pruned count cluster objects; Rollout says how the wait ended.
	Applied, Pruned int
	Rollout         string
	// Phases lists the phases run, with their durations.
	Phases []PhaseTiming
	// Err is the error the command ended with, if any.
	Err error
}

// PhaseTiming is one phase's name and duration.
type PhaseTiming struct {
	Name     string
	Duration time.Duration
	Failed   bool
}

// Reporter shows a command's progress and result in the way the CI system renders best. All
// text it is given has already been redacted by the caller's writers.
type Reporter interface {
	// Phase starts a named phase (verify, clone, edit, push, apply, wait); the returned func
	// ends it and records its duration.
	Phase(name, title string) (end func(err error))
	// Logf writes a progress line.
	Logf(format string, args ...any)
	// Warnf writes a warning.
	Warnf(format string, args ...any)
	// Finish reports the outcome (outputs, summary, the final error annotation).
	Finish(o Outcome) error
	// Timings returns the phases run so far.
	Timings() []PhaseTiming
}

// Plain reports to a terminal or a plain log: one line per phase start and end with its
// duration, and indented progress lines.
type Plain struct {
	w       io.Writer
	mu      sync.Mutex
	timings []PhaseTiming
	now     func() time.Time
}

// NewPlain returns a Plain reporter writing to w (stderr).
func NewPlain(w io.Writer) *Plain { return &Plain{w: w, now: time.Now} }

// Phase implements Reporter.
func (p *Plain) Phase(name, title string) func(error) {
	start := p.now()
	p.printf("==> %s: %s\n", name, title)
	return func(err error) {
		d := p.now().Sub(start)
		p.mu.Lock()
		p.timings = append(p.timings, PhaseTiming{Name: name, Duration: d, Failed: err != nil})
		p.mu.Unlock()
		if err != nil {
			p.printf("    %s failed after %s\n", name, round(d))
			return
		}
		p.printf("    %s done in %s\n", name, round(d))
	}
}

// Logf implements Reporter.
func (p *Plain) Logf(format string, args ...any) {
	p.printf("    %s\n", strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// Warnf implements Reporter.
func (p *Plain) Warnf(format string, args ...any) {
	p.printf("warning: %s\n", strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// Finish implements Reporter; the plain reporter has no outputs beyond the result line the
// command prints on stdout.
func (p *Plain) Finish(Outcome) error { return nil }

// Timings implements Reporter.
func (p *Plain) Timings() []PhaseTiming {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PhaseTiming(nil), p.timings...)
}

func (p *Plain) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func round(d time.Duration) time.Duration {
	switch {
	case d > 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
