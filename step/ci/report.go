package ci

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Outcome is what a command reports at its end: the values CI exposes as outputs (GitHub step
// outputs, GitLab dotenv variables, the JSON report) and shows in summaries.
type Outcome struct {
	Command     string
	Environment string
	// DryRun marks a run that pushed and applied nothing: Changed, Applied, Pruned and Diff say
	// what a real run would do.
	DryRun bool
	// Changed is true when the config repo got a new commit (in a dry run: would get one).
	Changed bool
	// CommitSHA and CommitURL identify the config commit (the new one, or the current tip).
	CommitSHA, CommitURL string
	// Images are the image references set, pinned (name=repo:tag@digest).
	Images []string
	// Previous holds, by image name, the reference the overlay gave each image before the run
	// ("" for an image it had no entry for: the manifests' own).
	Previous map[string]string
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
	// Objects is the rollout per object: what the apply did to each and the state it ended in.
	Objects []ObjectStatus
	// Diff is the change to the overlay's kustomization file as a unified diff (dry runs).
	Diff string
	// Run is the pipeline that ran deliver (source commit, links, actor) with the trigger the
	// policy was checked against.
	Run Context
	// ErrAt is where in the config repo Err points, when it concerns one of its files.
	ErrAt FileRef
	// Phases lists the phases run, with their durations.
	Phases []PhaseTiming
	// Err is the error the command ended with, if any.
	Err error
}

// ObjectStatus is one cluster object of a rollout.
type ObjectStatus struct {
	// Object is Kind/namespace/name.
	Object string `json:"object"`
	// Action is what the apply did: created, configured, unchanged or pruned.
	Action string `json:"action"`
	// Status is the state the wait left it in ("2/2 ready", "Current", ...); "" when not waited for.
	Status string `json:"status,omitempty"`
}

// FileRef is a place in a file of the config repo.
type FileRef struct {
	// Path is relative to the config repo's root; Line is 1-based, 0 when unknown.
	Path string
	Line int
	// URL links to the file (and line) at the commit deliver read, when the forge is known.
	URL string
	// InSourceRepo is true when the config repo is the repository the pipeline runs in, so that
	// a GitHub annotation can point at the file itself.
	InSourceRepo bool
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
	phases
	w  io.Writer
	mu sync.Mutex
}

// NewPlain returns a Plain reporter writing to w (stderr).
func NewPlain(w io.Writer) *Plain { return &Plain{w: w, phases: phases{now: time.Now}} }

// Phase implements Reporter.
func (p *Plain) Phase(name, title string) func(error) {
	_, end := p.start(name)
	p.printf("==> %s: %s\n", name, title)
	return func(err error) {
		d, _ := end(err)
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
// command prints on stdout, and the link to the config repo's file an error is about.
func (p *Plain) Finish(o Outcome) error {
	if o.Err != nil && o.ErrAt.URL != "" {
		p.printf("    the error is in %s of the config repo: %s\n", o.ErrAt.Path, o.ErrAt.URL)
	}
	return nil
}

// phases records the phases a reporter ran and how long each took; reporters embed it for
// their Timings.
type phases struct {
	mu      sync.Mutex
	timings []PhaseTiming
	now     func() time.Time
}

// start starts timing a phase and returns its start time; the function it returns records the
// phase's end and returns its duration and end time.
func (ps *phases) start(name string) (time.Time, func(error) (time.Duration, time.Time)) {
	start := ps.now()
	return start, func(err error) (time.Duration, time.Time) {
		end := ps.now()
		d := end.Sub(start)
		ps.mu.Lock()
		ps.timings = append(ps.timings, PhaseTiming{Name: name, Duration: d, Failed: err != nil})
		ps.mu.Unlock()
		return d, end
	}
}

// Timings implements Reporter.
func (ps *phases) Timings() []PhaseTiming {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]PhaseTiming(nil), ps.timings...)
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

// Image is one image of an outcome as the images output and the JSON report give it.
type Image struct {
	// Name is the image's name in the manifests (web).
	Name string `json:"name"`
	// Image is the reference set, REPOSITORY:TAG@DIGEST (or as given when not pinned).
	Image string `json:"image"`
	// Digest is the image's digest, when pinned.
	Digest string `json:"digest,omitempty"`
	// Previous is the reference the overlay gave the image before; "" when it had no entry
	// for it (the manifests' own image).
	Previous string `json:"previous"`
}

// ImageList is the outcome's images, in the order they were given, with their previous
// references.
func (o Outcome) ImageList() []Image {
	out := make([]Image, 0, len(o.Images))
	for _, img := range o.Images {
		name, ref, _ := strings.Cut(img, "=")
		i := Image{Name: name, Image: ref, Previous: o.Previous[name]}
		if _, d, ok := strings.Cut(ref, "@"); ok {
			i.Digest = d
		}
		out = append(out, i)
	}
	return out
}

// Report is the JSON report of an outcome (deliver --report FILE): everything the summary
// shows, for later jobs and tools. Its fields only ever grow.
type Report struct {
	Command     string `json:"command"`
	Environment string `json:"environment,omitempty"`
	DryRun      bool   `json:"dry_run"`
	Succeeded   bool   `json:"succeeded"`
	Error       string `json:"error,omitempty"`
	// ErrorAt is where in the config repo the error points, when it concerns one of its files.
	ErrorAt      *ReportFile    `json:"error_at,omitempty"`
	Changed      bool           `json:"changed"`
	ConfigCommit ReportCommit   `json:"config_commit"`
	Images       []Image        `json:"images"`
	URL          string         `json:"url,omitempty"`
	Applied      int            `json:"applied"`
	Pruned       int            `json:"pruned"`
	Rollout      string         `json:"rollout,omitempty"`
	Objects      []ObjectStatus `json:"objects"`
	Diff         string         `json:"diff,omitempty"`
	Source       ReportSource   `json:"source"`
	Phases       []ReportPhase  `json:"phases"`
}

// ReportCommit is a commit and its web link.
type ReportCommit struct {
	SHA string `json:"sha,omitempty"`
	URL string `json:"url,omitempty"`
}

// ReportFile is a place in a file of the config repo.
type ReportFile struct {
	Path string `json:"path"`
	Line int    `json:"line,omitempty"`
	URL  string `json:"url,omitempty"`
}

// ReportSource is the pipeline that ran deliver.
type ReportSource struct {
	Repo        string `json:"repo,omitempty"`
	Commit      string `json:"commit,omitempty"`
	CommitURL   string `json:"commit_url,omitempty"`
	PipelineURL string `json:"pipeline_url,omitempty"`
	Trigger     string `json:"trigger,omitempty"`
	Event       string `json:"event,omitempty"`
	Actor       string `json:"actor,omitempty"`
}

// ReportPhase is one phase and how long it took.
type ReportPhase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Failed  bool    `json:"failed,omitempty"`
}

// NewReport builds the JSON report of an outcome.
func NewReport(o Outcome) Report {
	r := Report{
		Command: o.Command, Environment: o.Environment, DryRun: o.DryRun, Succeeded: o.Err == nil,
		Changed: o.Changed, ConfigCommit: ReportCommit{SHA: commitSHA(o), URL: o.CommitURL},
		Images: o.ImageList(), URL: o.URL, Applied: o.Applied, Pruned: o.Pruned, Rollout: o.Rollout,
		Objects: append([]ObjectStatus{}, o.Objects...), Diff: o.Diff,
		Source: ReportSource{
			Repo: o.Run.SourceRepo, Commit: o.Run.Commit, CommitURL: o.Run.CommitURL, PipelineURL: o.Run.PipelineURL,
			Trigger: string(o.Run.Trigger), Event: o.Run.Event, Actor: o.Run.Actor,
		},
		Phases: []ReportPhase{},
	}
	if o.Err != nil {
		r.Error = o.Err.Error()
		if o.ErrAt.Path != "" {
			r.ErrorAt = &ReportFile{Path: o.ErrAt.Path, Line: o.ErrAt.Line, URL: o.ErrAt.URL}
		}
	}
	for _, p := range o.Phases {
		r.Phases = append(r.Phases, ReportPhase{Name: p.Name, Seconds: p.Duration.Seconds(), Failed: p.Failed})
	}
	return r
}

// WriteReport writes the JSON report of an outcome to path.
func WriteReport(path string, o Outcome) error {
	b, err := json.MarshalIndent(NewReport(o), "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the JSON report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the JSON report %s: %w", path, err)
	}
	return nil
}

// commitSHA is the outcome's config commit, "" for none (a dry run, a failure before the push).
func commitSHA(o Outcome) string {
	if strings.Trim(o.CommitSHA, "0") == "" {
		return ""
	}
	return o.CommitSHA
}
