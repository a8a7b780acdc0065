package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths inside the image. They match the Dockerfile's.
const (
	deliverPath  = "/usr/local/bin/deliver"
	busyboxPath  = "/bin/busybox"
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"
	imagePATH    = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
)

// spec is what goes into the image.
type spec struct {
	// Deliver, Busybox and CABundle are host paths of the static deliver binary, a static
	// busybox and the PEM CA bundle.
	Deliver, Busybox, CABundle string
	// Version labels the image (org.opencontainers.image.version).
	Version string
	// Created stamps the config and every file, so that equal inputs give equal digests.
	Created time.Time
}

// buildImage assembles deliver's image: a base layer (busybox with its applets linked, /bin/sh
// among them, the CA bundle, root's passwd and group entries, /tmp and /root) and a layer with
// the deliver binary, as OCI media types, with the Dockerfile's ENTRYPOINT and ENV. It runs
// nothing but `busybox --list-full`, to learn the applets.
func buildImage(s spec) (v1.Image, error) {
	for what, p := range map[string]string{"deliver binary": s.Deliver, "busybox": s.Busybox} {
		if err := checkStatic(p); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	applets, err := listApplets(s.Busybox)
	if err != nil {
		return nil, err
	}
	busybox, err := os.ReadFile(s.Busybox)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(s.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle (Debian's ca-certificates package): %w", err)
	}
	deliver, err := os.ReadFile(s.Deliver)
	if err != nil {
		return nil, err
	}

	base := newTree(s.Created)
	base.dir("/tmp", 0o1777)
	base.dir("/root", 0o700)
	base.file(busyboxPath, 0o755, busybox)
	for _, a := range applets {
		if a != busyboxPath {
			base.symlink(a, busyboxPath)
		}
	}
	base.symlink("/bin/sh", "busybox") // relative, like Debian's own busybox links
	base.file(caBundlePath, 0o644, ca)
	base.file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	base.file("/etc/group", 0o644, []byte("root:x:0:\n"))

	app := newTree(s.Created)
	app.file(deliverPath, 0o755, deliver)

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, t := range []*tree{base, app} {
		layer, err := t.layer()
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", elfArch(s.Deliver)
	cf.Created = v1.Time{Time: s.Created}
	cf.Config.Entrypoint = []string{deliverPath}
	cf.Config.Cmd = nil
	cf.Config.Env = []string{"PATH=" + imagePATH, "SSL_CERT_FILE=" + caBundlePath}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "deliver",
		"org.opencontainers.image.source":  "https://github.com/deliverhq/deliver",
		"org.opencontainers.image.version": s.Version,
	}
	return mutate.ConfigFile(img, cf)
}

// checkStatic refuses a binary that needs a dynamic loader: the image has no libc.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: not an ELF binary: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the image has no libc (build with CGO_ENABLED=0, use busybox-static)", p)
		}
	}
	return nil
}

// elfArch maps the binary's machine to an OCI architecture name.
func elfArch(p string) string {
	f, err := elf.Open(p)
	if err != nil {
		return "amd64"
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_386:
		return "386"
	case elf.EM_ARM:
		return "arm"
	}
	return "amd64"
}

// listApplets asks busybox for its applets' full paths.
func listApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("running %s --list-full (is it a busybox for this machine's architecture?): %w", busybox, err)
	}
	var applets []string
	for _, l := range strings.Fields(string(out)) {
		p := path.Clean("/" + l)
		if p != "/" && !strings.Contains(p, "..") {
			applets = append(applets, p)
		}
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list-full printed no applets", busybox)
	}
	return applets, nil
}

// tree is the content of one layer: paths to entries, parents created implicitly.
type tree struct {
	mtime   time.Time
	entries map[string]*tar.Header
	data    map[string][]byte
}

func newTree(mtime time.Time) *tree {
	return &tree{mtime: mtime, entries: map[string]*tar.Header{}, data: map[string][]byte{}}
}

func (t *tree) parents(p string) {
	for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
		if _, ok := t.entries[d]; !ok {
			t.dir(d, 0o755)
		}
	}
}

func (t *tree) dir(p string, mode int64) {
	t.parents(p)
	t.entries[p] = &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode, ModTime: t.mtime}
}

func (t *tree) file(p string, mode int64, data []byte) {
	t.parents(p)
	t.entries[p] = &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(data)), ModTime: t.mtime}
	t.data[p] = data
}

func (t *tree) symlink(p, target string) {
	t.parents(p)
	t.entries[p] = &tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(p, "/"), Linkname: target, Mode: 0o777, ModTime: t.mtime}
}

// layer renders the tree as a gzip-compressed OCI layer, entries sorted by path, owned by root.
func (t *tree) layer() (v1.Layer, error) {
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		h := *t.entries[p]
		h.Format = tar.FormatPAX
		h.Uname, h.Gname = "root", "root"
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(t.data[p]); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	// Compress once, here: a layer made from an uncompressed opener would be compressed again
	// for its digest, the layout and every push. gzip's header carries no time or name, so the
	// bytes depend on the content only.
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(buf.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// compressedSize is the sum of the image's compressed layer sizes: what a pull downloads,
// config and manifest aside.
func compressedSize(img v1.Image) (int64, error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// cacheDir is where downloaded inputs are kept between clones: $DELIVER_CACHE, else
// $XDG_CACHE_HOME/deliver, else ~/.cache/deliver.
func cacheDir() (string, error) {
	if d := os.Getenv("DELIVER_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "deliver"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set DELIVER_CACHE: %w", err)
	}
	return filepath.Join(home, ".cache", "deliver"), nil
}

// findBusybox returns the path of a static busybox from Debian's busybox-static package: the
// installed /bin/busybox when that package is installed, else the copy cached under
// cache/busybox-static, which it fills on first use with `apt-get download busybox-static` and
// `dpkg-deb -x` (needs the apt lists: `apt-get update` once).
func findBusybox(cache string) (string, error) {
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "busybox-static").Output(); err == nil &&
		strings.HasSuffix(strings.TrimSpace(string(out)), "installed") {
		if err := checkStatic("/bin/busybox"); err == nil {
			return "/bin/busybox", nil
		}
	}
	cached := filepath.Join(cache, "busybox-static", "bin", "busybox")
	if _, err := os.Stat(cached); err == nil {
		return cached, nil
	}
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("no busybox-static at %s and no %s to fetch it (pass --busybox): %w", cached, tool, err)
		}
	}
	tmp, err := os.MkdirTemp("", "deliver-busybox-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("apt-get", "download", "busybox-static")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download busybox-static (run `apt-get update` first): %w\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "busybox-static_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download busybox-static left %d .deb files", len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w\n%s", filepath.Base(debs[0]), err, out)
	}
	extracted := filepath.Join(root, "bin", "busybox")
	if err := checkStatic(extracted); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		return "", err
	}
	// Copy then rename, so a concurrent or interrupted fetch never leaves half a binary.
	data, err := os.ReadFile(extracted)
	if err != nil {
		return "", err
	}
	part := cached + fmt.Sprintf(".%d.part", os.Getpid())
	if err := os.WriteFile(part, data, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(part, cached); err != nil {
		_ = os.Remove(part)
		return "", err
	}
	return cached, nil
}

// errUsage marks a bad command line.
var errUsage = errors.New("usage")
