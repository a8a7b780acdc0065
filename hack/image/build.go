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

// spec is what goes into the image of one platform.
type spec struct {
	// Deliver, Busybox and CABundle are host paths of the static deliver binary, a static
	// busybox (both for Arch) and the PEM CA bundle.
	Deliver, Busybox, CABundle string
	// Arch is the OCI architecture of Deliver and Busybox (amd64, arm64).
	Arch string
	// Applets are the full paths of busybox's applets (listApplets), linked to /bin/busybox.
	Applets []string
	// Version labels the image (org.opencontainers.image.version).
	Version string
	// Created stamps the config and every file, so that equal inputs give equal digests.
	Created time.Time
}

// buildImage assembles deliver's image for one platform: a base layer (busybox with its
// applets linked, /bin/sh among them, the CA bundle, root's passwd and group entries, /tmp and
// /root) and a layer with the deliver binary, as OCI media types, with the Dockerfile's
// ENTRYPOINT and ENV. It runs nothing.
func buildImage(s spec) (v1.Image, error) {
	for what, p := range map[string]string{"deliver binary": s.Deliver, "busybox": s.Busybox} {
		if err := checkStatic(p); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		arch, err := elfArch(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if arch != s.Arch {
			return nil, fmt.Errorf("%s %s is built for %s, the image for %s", what, p, arch, s.Arch)
		}
	}
	busybox, err := os.ReadFile(s.Busybox)
	if err != nil {
		return nil, err
	}
	if err := checkApplets(s.Busybox, busybox, s.Applets); err != nil {
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
	for _, a := range s.Applets {
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
	p := platform(s.Arch)
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
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

// buildIndex assembles the image of every platform into one OCI image index, in the order of
// specs: what `docker pull` and the runners resolve to their own platform.
func buildIndex(specs []spec) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, s := range specs {
		if seen[s.Arch] {
			return nil, fmt.Errorf("%w: two deliver binaries for %s", errUsage, s.Arch)
		}
		seen[s.Arch] = true
		img, err := buildImage(s)
		if err != nil {
			return nil, fmt.Errorf("linux/%s: %w", s.Arch, err)
		}
		p := platform(s.Arch)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, Platform: &p},
		})
	}
	return idx, nil
}

// platform is the OCI platform of a Linux architecture; arm64 carries variant v8, as Docker
// and containerd write it.
func platform(arch string) v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: arch}
	if arch == "arm64" {
		p.Variant = "v8"
	}
	return p
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

// elfArch maps the machine of a Linux ELF binary to an OCI architecture name.
func elfArch(p string) (string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("%s: not an ELF binary: %w", p, err)
	}
	defer f.Close()
	switch {
	case f.Machine == elf.EM_X86_64 && f.Class == elf.ELFCLASS64:
		return "amd64", nil
	case f.Machine == elf.EM_AARCH64 && f.Class == elf.ELFCLASS64:
		return "arm64", nil
	}
	return "", fmt.Errorf("%s: ELF machine %v (%v) is not a platform of the image (amd64, arm64)", p, f.Machine, f.Class)
}

// checkApplets checks that a busybox binary (data, read from path) has each applet: busybox
// keeps its applet names as one NUL-separated table. The applet list comes from running the
// busybox of the build machine's architecture (listApplets), which cannot be done with another
// architecture's binary; the same Debian package version has the same applets on every
// architecture, and this check holds the other binaries to that.
func checkApplets(path string, data []byte, applets []string) error {
	var missing []string
	for _, a := range applets {
		if !bytes.Contains(data, []byte("\x00"+filepath.Base(a)+"\x00")) {
			missing = append(missing, filepath.Base(a))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks the applets %s of the build machine's busybox: use the same busybox-static version for every architecture (hack/test-deps.sh busybox)", path, strings.Join(missing, ", "))
	}
	return nil
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

// findBusybox returns the path of the static busybox for arch in dir (dir/<arch>/busybox),
// which `make image-deps` (hack/test-deps.sh busybox) fills from Debian's busybox-static.
func findBusybox(dir, arch string) (string, error) {
	p := filepath.Join(dir, arch, "busybox")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no busybox-static for %s: run `make image-deps` (hack/test-deps.sh busybox): %w", arch, err)
	}
	return p, nil
}

// errUsage marks a bad command line.
var errUsage = errors.New("usage")
