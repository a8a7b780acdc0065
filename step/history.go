package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/release"
)

// entry is a release record with the commit that holds it.
type entry struct {
	release.Record
	Commit string    `json:"commit"`
	Time   time.Time `json:"time"`
	Author string    `json:"author"`
}

// maxHistoryDepth bounds how far back history and rollback read.
const maxHistoryDepth = 10000

// readHistory returns env's records, newest first, reading the config repo's first-parent
// history from HEAD and deepening the shallow clone only as far as needed: it stops as soon as
// enough reports true, or the history (or maxHistoryDepth) ends.
func readHistory(ctx context.Context, repo *configrepo.Repo, envName string, enough func([]entry) bool) ([]entry, error) {
	depth := 1
	for {
		entries, n, err := walkRecords(repo, envName)
		if err != nil {
			return nil, err
		}
		if enough(entries) || n < depth || depth >= maxHistoryDepth {
			return entries, nil
		}
		next := depth * 8
		if depth == 1 {
			next = 32
		}
		if next > maxHistoryDepth {
			next = maxHistoryDepth
		}
		got, err := repo.Deepen(ctx, next)
		if err != nil {
			return nil, err
		}
		if got <= n {
			return entries, nil // nothing more on the server
		}
		depth = next
	}
}

// walkRecords parses the records in the commits the clone holds; n counts those commits.
func walkRecords(repo *configrepo.Repo, envName string) ([]entry, int, error) {
	head, err := repo.Head()
	if err != nil {
		return nil, 0, err
	}
	var out []entry
	n := 0
	c, err := repo.Git().CommitObject(head)
	for err == nil {
		n++
		if e, ok := parseEntry(c); ok && (envName == "" || e.Environment == envName) {
			out = append(out, e)
		}
		if c.NumParents() == 0 {
			break
		}
		c, err = c.Parent(0)
	}
	return out, n, nil
}

func parseEntry(c *object.Commit) (entry, bool) {
	rec, err := release.Parse(c.Message)
	if err != nil {
		return entry{}, false
	}
	return entry{Record: rec, Commit: c.Hash.String(), Time: c.Committer.When, Author: c.Author.Name}, true
}

// previousRelease finds the release of image before current in env's history: the newest
// image deployed or promoted there that is neither current nor one a rollback or revert moved
// away from. An empty result means there is none.
func previousRelease(entries []entry, image, current string) string {
	rolledBack := map[string]bool{}
	for _, e := range entries {
		if e.Action == release.ActionRollback || e.Action == release.ActionRevert {
			for _, ch := range e.Images {
				if ch.Name == image && ch.From != "" {
					rolledBack[ch.From] = true
				}
			}
		}
	}
	for _, e := range entries {
		if e.Action != release.ActionDeploy && e.Action != release.ActionPromote && e.Action != "" {
			continue
		}
		for _, ch := range e.Images {
			if ch.Name != image || ch.To == current || rolledBack[ch.To] {
				continue
			}
			return ch.To
		}
		// The From of a deploy is a release too (the first deploy's From predates deliver).
		for _, ch := range e.Images {
			if ch.Name == image && ch.From != "" && ch.From != current && !rolledBack[ch.From] {
				return ch.From
			}
		}
	}
	return ""
}

func (r *runner) historyCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv), Usage: "environment (required)"},
		&cli.StringFlag{Name: flagImage, EnvVars: env(flagImage), Usage: "only changes of this image (the name the manifests use)"},
		&cli.IntFlag{Name: "limit", EnvVars: env("limit"), Value: 20, Usage: "show at most this many changes"},
		&cli.BoolFlag{Name: "json", EnvVars: env("json"), Usage: "print JSON, one array"},
	}
	flags = append(flags, configRepoFlags()...)
	return &cli.Command{
		Name:   "history",
		Usage:  "list an environment's changes, newest first, from the config repo's commit trailers",
		Flags:  flags,
		Action: r.withReporterQuiet(r.history),
	}
}

func (r *runner) history(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	envName, image, limit := c.String(flagEnv), c.String(flagImage), c.Int("limit")
	out := ci.Outcome{Command: "history", Environment: envName}
	if err := validateEnvName(envName); err != nil {
		return out, usage(err)
	}
	if limit < 1 {
		return out, usage(errors.New("--limit must be at least 1"))
	}
	opts, err := r.configRepoOptions(c)
	if err != nil {
		return out, err
	}
	repo, err := r.clone(ctx, opts)
	if err != nil {
		return out, err
	}
	defer repo.Close()
	match := func(e entry) bool {
		if image == "" {
			return true
		}
		for _, ch := range e.Images {
			if ch.Name == image {
				return true
			}
		}
		return false
	}
	entries, err := readHistory(ctx, repo, envName, func(es []entry) bool {
		n := 0
		for _, e := range es {
			if match(e) {
				n++
			}
		}
		return n >= limit
	})
	if err != nil {
		return out, err
	}
	var shown []entry
	for _, e := range entries {
		if match(e) && len(shown) < limit {
			shown = append(shown, e)
		}
	}
	if c.Bool("json") {
		if shown == nil {
			shown = []entry{}
		}
		enc := json.NewEncoder(r.stdout)
		enc.SetIndent("", "  ")
		return out, enc.Encode(shown)
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTION\tIMAGE\tFROM\tTO\tTRIGGER\tAUTHOR\tCOMMIT\tPIPELINE")
	for _, e := range shown {
		for _, ch := range e.Images {
			if image != "" && ch.Name != image {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Action, ch.Name,
				orDash(release.ShortRef(ch.From)), release.ShortRef(ch.To), e.Trigger+forcedMark(e.Forced), e.Author, short(e.Commit), orDash(e.Pipeline))
		}
	}
	return out, tw.Flush()
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func forcedMark(f bool) string {
	if f {
		return " (forced)"
	}
	return ""
}
