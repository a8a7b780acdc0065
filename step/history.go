// history.go owns `deliver history`: an environment's releases, read from the branch.

package step

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/release"
)

// readHistory returns env's deliver changes (all environments when env is ""), newest first,
// reading the config repo's history only as far back as enough needs: it stops once enough
// reports true for the entries read so far.
func readHistory(ctx context.Context, repo *configrepo.Repo, envName string, enough func([]release.Entry) bool) ([]release.Entry, error) {
	var out []release.Entry
	err := repo.History(ctx, func(c configrepo.Commit) bool {
		if e, ok := release.FromCommit(c.Hash, c.Message, c.Author, c.When); ok && (envName == "" || e.Environment == envName) {
			out = append(out, e)
		}
		return !enough(out)
	})
	return out, err
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
	match := func(e release.Entry) bool {
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
	entries, err := readHistory(ctx, repo, envName, func(es []release.Entry) bool {
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
	var shown []release.Entry
	for _, e := range entries {
		if match(e) && len(shown) < limit {
			shown = append(shown, e)
		}
	}
	if c.Bool("json") {
		if shown == nil {
			shown = []release.Entry{}
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
