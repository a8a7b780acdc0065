package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ---- P3: history growth ------------------------------------------------------------------

// P3Result compares deploys to a repo with a long history and one with a short history, both
// with the same tree.
type P3Result struct {
	Services                 int
	BigCommits, SmallCommits int
	BigBytes, SmallBytes     int64 // size of the bare repositories
	Generate                 time.Duration
	DeliverBig, DeliverSmall []Run
	ScriptBig, ScriptSmall   []Run
}

// P3 deploys (--no-apply) to a config repo with P3Commits commits and P3Services services and
// to one with P3SmallCommits commits and the same services, alternately.
func P3(ctx context.Context, e *Env, im *images, s Sizes) (*P3Result, error) {
	f := Fixture{Services: services(s.P3Services), Env: "p3", NS: "p3", Registry: e.Reg.Host, Tag: "1.0.0"}
	res := &P3Result{Services: s.P3Services, BigCommits: s.P3Commits, SmallCommits: s.P3SmallCommits}
	big, err := e.createRepo("p3-big", f)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := addHistory(e.Git.BareDir(big.Repo), "main", f, s.P3Commits-1, false); err != nil {
		return nil, err
	}
	res.Generate = time.Since(t0)
	// The short history ends at the very same tree: the long history's tip, then empty commits.
	seed, err := e.tempDir("p3-seed")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(seed)
	if err := exportTree(e.Git.BareDir(big.Repo), "main", seed); err != nil {
		return nil, err
	}
	smallURL, err := e.Git.CreateRepo("p3-small", "main", seed)
	if err != nil {
		return nil, err
	}
	small := Target{Repo: "p3-small", URL: smallURL, Env: f.Env, NS: f.NS}
	if err := addHistory(e.Git.BareDir(small.Repo), "main", f, s.P3SmallCommits-1, true); err != nil {
		return nil, err
	}
	bigTree, err := treeOf(e.Git.BareDir(big.Repo))
	if err != nil {
		return nil, err
	}
	if smallTree, err := treeOf(e.Git.BareDir(small.Repo)); err != nil || smallTree != bigTree {
		return nil, fmt.Errorf("P3: the two repos' tips differ (%s, %s, %v)", bigTree, smallTree, err)
	}
	for _, c := range []struct {
		t    Target
		want int
		size *int64
	}{{big, s.P3Commits, &res.BigBytes}, {small, s.P3SmallCommits, &res.SmallBytes}} {
		log, err := e.Git.Log(c.t.Repo, "main")
		if err != nil {
			return nil, err
		}
		if len(log) != c.want {
			return nil, fmt.Errorf("P3: %s has %d commits, want %d", c.t.Repo, len(log), c.want)
		}
		*c.size = dirSize(e.Git.BareDir(c.t.Repo))
	}
	e.Log("P3 generated %d commits in %s (%s packed)", s.P3Commits, ms(res.Generate), mb(res.BigBytes))
	for i := 0; i < s.P3Runs; i++ {
		d, digest, err := e.deployOf(im, f, f.Services[i%len(f.Services)], fmt.Sprintf("1.%d.0", i+1))
		if err != nil {
			return nil, err
		}
		order := []Target{big, small}
		if i%2 == 1 {
			order = []Target{small, big}
		}
		for _, t := range order {
			r, err := e.deliver(ctx, nil, t, d)
			if err == nil && !r.OK() {
				err = fmt.Errorf("P3 deliver on %s failed:\n%s", t.Repo, r)
			}
			if err == nil {
				err = e.checkLanded(t, d, digest)
			}
			if err != nil {
				return nil, err
			}
			rs, err := e.script(ctx, nil, t, d, "")
			if err == nil && !rs.OK() {
				err = fmt.Errorf("P3 script on %s failed:\n%s", t.Repo, rs)
			}
			if err != nil {
				return nil, err
			}
			if t.Repo == big.Repo {
				res.DeliverBig, res.ScriptBig = append(res.DeliverBig, r), append(res.ScriptBig, rs)
			} else {
				res.DeliverSmall, res.ScriptSmall = append(res.DeliverSmall, r), append(res.ScriptSmall, rs)
			}
		}
		e.Log("P3 run %d/%d: deliver big %s small %s; script big %s small %s", i+1, s.P3Runs,
			ms(res.DeliverBig[i].Wall), ms(res.DeliverSmall[i].Wall), ms(res.ScriptBig[i].Wall), ms(res.ScriptSmall[i].Wall))
	}
	return res, nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// ---- P4: apply scale ---------------------------------------------------------------------

// P4Result compares applying and waiting for a large overlay.
type P4Result struct {
	Objects                     int
	DeliverCreate, ScriptCreate Run
	Deliver, Script             []Run // updates: one image changed, everything else unchanged
	// Requests are the API requests to ConfigMaps and Secrets by verb during the last update
	// run of each tool (from the API server's apiserver_request_total).
	DeliverRequests, ScriptRequests map[string]int
}

// p4Fixture builds an overlay of about objects objects: 2% Deployments with a Service each,
// the rest ConfigMaps and Secrets, and the Namespace.
func p4Fixture(name, registry string, objects int) Fixture {
	deployments := max(objects/50, 1)
	rest := objects - 1 - 2*deployments
	return Fixture{Services: services(deployments), WithServices: true, ConfigMaps: (rest + 1) / 2, Secrets: rest / 2,
		Env: name, NS: name, Registry: registry, Tag: "1.0.0"}
}

// P4 applies a P4Objects-object overlay with deliver and with kubectl (through the baseline
// script): first creating everything, then updating one image at a time.
func P4(ctx context.Context, e *Env, im *images, s Sizes) (*P4Result, error) {
	fd, fs := p4Fixture("p4-deliver", e.Reg.Host, s.P4Objects), p4Fixture("p4-script", e.Reg.Host, s.P4Objects)
	td, err := e.createRepo("p4-deliver", fd)
	if err != nil {
		return nil, err
	}
	ts, err := e.createRepo("p4-script", fs)
	if err != nil {
		return nil, err
	}
	td.Apply, ts.Apply = true, true
	td.Timeout, ts.Timeout = 15*time.Minute, 15*time.Minute
	res := &P4Result{Objects: fd.Objects()}
	for i := 0; i <= s.P4Runs; i++ {
		svc := fd.Services[i%len(fd.Services)]
		d, digest, err := e.deployOf(im, fd, svc, fmt.Sprintf("1.%d.0", i+1))
		if err != nil {
			return nil, err
		}
		before, err := e.requestCounts(ctx)
		if err != nil {
			return nil, err
		}
		rd, err := e.deliver(ctx, nil, td, d)
		if err == nil && !rd.OK() {
			err = fmt.Errorf("P4 deliver run %d failed:\n%s", i, rd)
		}
		if err == nil {
			err = e.checkLanded(td, d, digest)
		}
		if err != nil {
			return nil, err
		}
		mid, err := e.requestCounts(ctx)
		if err != nil {
			return nil, err
		}
		rs, err := e.script(ctx, nil, ts, d, "deployment --selector bench-tier=app")
		if err == nil && !rs.OK() {
			err = fmt.Errorf("P4 script run %d failed:\n%s", i, rs)
		}
		if err != nil {
			return nil, err
		}
		after, err := e.requestCounts(ctx)
		if err != nil {
			return nil, err
		}
		if err := e.checkObjects(ctx, fd.NS, fd); err != nil {
			return nil, err
		}
		if err := e.checkObjects(ctx, fs.NS, fs); err != nil {
			return nil, err
		}
		kind := "update"
		if i == 0 {
			kind = "create"
			res.DeliverCreate, res.ScriptCreate = rd, rs
		} else {
			res.Deliver, res.Script = append(res.Deliver, rd), append(res.Script, rs)
		}
		res.DeliverRequests, res.ScriptRequests = diffCounts(mid, before), diffCounts(after, mid)
		e.Log("P4 %s: deliver apply %s wait %s (peak RSS %s); kubectl apply %s wait %s", kind,
			ms(rd.Phases["apply"]), ms(rd.Phases["wait"]), mb(rd.MaxRSS), ms(rs.Phases["apply"]), ms(rs.Phases["wait"]))
	}
	return res, nil
}

// checkObjects checks that the namespace holds the fixture's ConfigMaps, Secrets and
// Deployments.
func (e *Env) checkObjects(ctx context.Context, ns string, f Fixture) error {
	out, err := e.Cluster.Kubectl(ctx, "get", "configmaps,secrets,deployments", "-n", ns, "-o", "name")
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, l := range strings.Fields(string(out)) {
		kind, name, _ := strings.Cut(l, "/")
		if strings.HasPrefix(name, "config-") || strings.HasPrefix(name, "secret-") || strings.HasPrefix(name, "svc-") {
			counts[kind]++
		}
	}
	if counts["configmap"] != f.ConfigMaps || counts["secret"] != f.Secrets || counts["deployment.apps"] != len(f.Services) {
		return fmt.Errorf("namespace %s holds %v, want %d ConfigMaps, %d Secrets, %d Deployments", ns, counts, f.ConfigMaps, f.Secrets, len(f.Services))
	}
	return nil
}

var requestLineRE = regexp.MustCompile(`^apiserver_request_total\{(.*)\} (\S+)$`)

// requestCounts reads apiserver_request_total for ConfigMaps and Secrets, by verb.
func (e *Env) requestCounts(ctx context.Context) (map[string]int, error) {
	out, err := e.Cluster.Kubectl(ctx, "get", "--raw", "/metrics")
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := requestLineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		labels := m[1]
		if !strings.Contains(labels, `resource="configmaps"`) && !strings.Contains(labels, `resource="secrets"`) {
			continue
		}
		verb := labelValue(labels, "verb")
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			counts[verb] += int(v)
		}
	}
	return counts, sc.Err()
}

func labelValue(labels, name string) string {
	i := strings.Index(labels, name+`="`)
	if i < 0 {
		return ""
	}
	rest := labels[i+len(name)+2:]
	return rest[:strings.IndexByte(rest, '"')]
}

func diffCounts(after, before map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range after {
		if v-before[k] > 0 {
			d[k] = v - before[k]
		}
	}
	return d
}

// ---- P5: image size and start time ---------------------------------------------------------

// P5Result holds the start time samples and the sizes.
type P5Result struct {
	Version          []time.Duration
	BinaryBytes      int64
	BinaryGzipBytes  int64
	Image            []ImageManifest // nil when not measured
	ImageNotMeasured string          // why, when not measured
	ImageDir         string
}

// ImageManifest is one platform's image in an OCI layout.
type ImageManifest struct {
	Platform    string
	Layers      []int64 // compressed sizes
	ConfigBytes int64
}

// Total is the image's compressed size: its layers and config.
func (m ImageManifest) Total() int64 {
	n := m.ConfigBytes
	for _, l := range m.Layers {
		n += l
	}
	return n
}

// P5 times `deliver version` and measures the binary and, if `make image` left an OCI layout
// in imageDir, the image.
func P5(ctx context.Context, e *Env, s Sizes, imageDir string) (*P5Result, error) {
	res := &P5Result{ImageDir: imageDir}
	for i := 0; i < s.P5Runs+3; i++ {
		r, err := e.run(ctx, nil, nil, e.Tools.Deliver, "version")
		if err != nil {
			return nil, err
		}
		if !r.OK() || strings.TrimSpace(r.Stdout) == "" {
			return nil, fmt.Errorf("deliver version:\n%s", r)
		}
		if i >= 3 { // the first runs warm the page cache
			res.Version = append(res.Version, r.Wall)
		}
	}
	fi, err := os.Stat(e.Tools.Deliver)
	if err != nil {
		return nil, err
	}
	res.BinaryBytes = fi.Size()
	if res.BinaryGzipBytes, err = gzipSize(e.Tools.Deliver); err != nil {
		return nil, err
	}
	res.Image, err = readOCILayout(imageDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		res.Image = nil
		res.ImageNotMeasured = fmt.Sprintf("%s does not exist: `make image` had not been run (the image target belongs to another change); run `make image` before `make bench` to measure it", imageDir)
	case err != nil:
		res.Image = nil
		res.ImageNotMeasured = fmt.Sprintf("%s is not a readable OCI layout: %v", imageDir, err)
	}
	return res, nil
}

// gzipSize is the size of path compressed with gzip (default level), as a registry layer
// would hold the binary.
func gzipSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n countingWriter
	zw := gzip.NewWriter(&n)
	if _, err := io.Copy(zw, f); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(n), nil
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

type ociDescriptor struct {
	MediaType string    `json:"mediaType"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Platform  *platform `json:"platform"`
}

type platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
}

type ociIndexOrManifest struct {
	MediaType string          `json:"mediaType"`
	Manifests []ociDescriptor `json:"manifests"`
	Config    *ociDescriptor  `json:"config"`
	Layers    []ociDescriptor `json:"layers"`
}

// readOCILayout reads every image manifest reachable from dir/index.json.
func readOCILayout(dir string) ([]ImageManifest, error) {
	read := func(digest string) (ociIndexOrManifest, error) {
		var m ociIndexOrManifest
		algo, hex, ok := strings.Cut(digest, ":")
		if !ok {
			return m, fmt.Errorf("bad digest %q", digest)
		}
		data, err := os.ReadFile(filepath.Join(dir, "blobs", algo, hex))
		if err != nil {
			return m, err
		}
		return m, json.Unmarshal(data, &m)
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, err
	}
	var root ociIndexOrManifest
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	var out []ImageManifest
	var walk func(descs []ociDescriptor, depth int) error
	walk = func(descs []ociDescriptor, depth int) error {
		for _, d := range descs {
			m, err := read(d.Digest)
			if err != nil {
				return err
			}
			if len(m.Manifests) > 0 && depth < 3 {
				if err := walk(m.Manifests, depth+1); err != nil {
					return err
				}
				continue
			}
			if m.Config == nil {
				continue
			}
			im := ImageManifest{Platform: "unknown platform", ConfigBytes: m.Config.Size}
			plat := d.Platform
			if plat == nil {
				// Single-platform layouts often leave the platform to the image config.
				if algo, hex, ok := strings.Cut(m.Config.Digest, ":"); ok {
					if data, err := os.ReadFile(filepath.Join(dir, "blobs", algo, hex)); err == nil {
						_ = json.Unmarshal(data, &plat)
					}
				}
			}
			if plat != nil && plat.OS != "" {
				im.Platform = plat.OS + "/" + plat.Architecture
				if plat.Variant != "" {
					im.Platform += "/" + plat.Variant
				}
			}
			for _, l := range m.Layers {
				im.Layers = append(im.Layers, l.Size)
			}
			out = append(out, im)
		}
		return nil
	}
	if err := walk(root.Manifests, 0); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no image manifest in index.json")
	}
	return out, nil
}

// treeOf returns the tree hash at main of the bare repository.
func treeOf(bare string) (string, error) {
	out, err := exec.Command("git", "--git-dir="+bare, "rev-parse", "main^{tree}").Output()
	return strings.TrimSpace(string(out)), err
}
