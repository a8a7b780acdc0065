package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/deliverhq/deliver/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const testVersion = "v0.0.0-imagetest"

// buildDeliver cross-compiles the static deliver binary the image carries for one architecture,
// as `make cross` does.
func buildDeliver(t *testing.T, arch string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "linux-"+arch, "deliver")
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/deliverhq/deliver/step.version="+testVersion,
		"-o", bin, "github.com/deliverhq/deliver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for linux/%s: %v\n%s", arch, err, out)
	}
	t.Logf("built deliver for linux/%s in %s", arch, time.Since(start).Round(100*time.Millisecond))
	return bin
}

// busyboxDir is the cache `make image-deps` fills with busybox-static per architecture.
func busyboxDir(t *testing.T) string {
	t.Helper()
	cache, err := cacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "busybox-static")
	for _, arch := range []string{"amd64", "arm64"} {
		if _, err := findBusybox(dir, arch); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// wantPlatforms are the image's platforms, in the order of the index.
var wantPlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}

// elfMachine maps an OCI architecture to the ELF machine of its binaries.
var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestImage builds deliver's two-platform image the way `make image` does (through the
// command's own entry point, with a deliver cross-compiled for linux/amd64 and linux/arm64),
// reads the OCI index back from the layout and checks, for each platform, the config GitHub and
// GitLab rely on and that the binaries of its file system (deliver, busybox) are ELF files of
// that platform's machine. It runs `/bin/sh -c 'deliver version'` chrooted, in a new mount
// namespace, in the host platform's file system: the image is self-contained (a static binary, a
// static shell, PATH from the image config), which is all GitHub's and GitLab's runners need of
// it. It pushes the index to a test registry under three tags and pulls each platform back by
// platform, as a runner of that platform does.
func TestImage(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test chroots into the image: CI must run it as root")
		}
		t.Skip("chroot needs root (CI runs as root)")
	}
	for _, tool := range []string{"unshare", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (util-linux, coreutils) is required (make test-deps installs it): %v", tool, err)
		}
	}
	bbDir := busyboxDir(t)
	delivers := map[string]string{}
	for _, p := range wantPlatforms {
		delivers[p.Architecture] = buildDeliver(t, p.Architecture)
	}
	// Run the command as `make image` does, built without -race: compressing 100 MB under the
	// race detector takes minutes.
	tool := filepath.Join(t.TempDir(), "image")
	if out, err := exec.Command("go", "build", "-o", tool, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./hack/image: %v\n%s", err, out)
	}
	reg := testenv.NewRegistry(t)
	out := filepath.Join(t.TempDir(), "image")
	tags := []string{testVersion, "v0.0", "v0"}
	var pushArgs []string
	for _, tag := range tags {
		pushArgs = append(pushArgs, "--push", reg.Ref("deliverhq/deliver", tag))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	image := func(out string, extra ...string) string {
		t.Helper()
		args := []string{"--busybox-dir", bbDir, "--out", out, "--version", testVersion}
		for _, p := range wantPlatforms {
			args = append(args, "--deliver", delivers[p.Architecture])
		}
		cmd := exec.CommandContext(ctx, tool, append(args, extra...)...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("image: %v\n%s", err, stderr.String())
		}
		t.Logf("%s(%s)", stderr.String(), time.Since(start).Round(10*time.Millisecond))
		return strings.TrimSpace(stdout.String())
	}
	digest := image(out, pushArgs...)
	// Same inputs, same digest.
	if again := image(filepath.Join(t.TempDir(), "again")); again != digest {
		t.Errorf("rebuilding gave %s, the first build %s: the build is not reproducible", again, digest)
	}

	// The layout holds one entry, the index, named for the version.
	lp, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 {
		t.Fatalf("layout holds %d entries, want 1 (the index)", len(top.Manifests))
	}
	desc := top.Manifests[0]
	if desc.Digest.String() != digest || desc.MediaType != types.OCIImageIndex {
		t.Errorf("layout entry %s %s, want the index %s printed", desc.MediaType, desc.Digest, digest)
	}
	if desc.Annotations["org.opencontainers.image.ref.name"] != testVersion {
		t.Errorf("layout ref name %q, want %q", desc.Annotations["org.opencontainers.image.ref.name"], testVersion)
	}
	idx, err := lp.ImageIndex(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	man, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Manifests) != len(wantPlatforms) {
		t.Fatalf("index has %d manifests, want %d", len(man.Manifests), len(wantPlatforms))
	}
	rootfs := map[string]string{}
	var envs []string
	for i, want := range wantPlatforms {
		d := man.Manifests[i]
		if d.Platform == nil || !d.Platform.Equals(want) {
			t.Errorf("index manifest %d: platform %v, want %v", i, d.Platform, want)
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf := checkConfig(t, img, want)
		envs = cf.Config.Env
		size, err := compressedSize(img)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s, %d bytes compressed (%.2f MiB)", want, d.Digest, size, float64(size)/(1<<20))
		dir := filepath.Join(t.TempDir(), "rootfs-"+want.Architecture)
		if err := unpack(img, dir); err != nil {
			t.Fatal(err)
		}
		rootfs[want.Architecture] = dir
		// Each platform's file system carries that platform's binaries.
		for _, p := range []string{"usr/local/bin/deliver", "bin/busybox"} {
			f, err := elf.Open(filepath.Join(dir, p))
			if err != nil {
				t.Errorf("%s: /%s: %v", want, p, err)
				continue
			}
			if f.Machine != elfMachine[want.Architecture] {
				t.Errorf("%s: /%s is for %v, want %v", want, p, f.Machine, elfMachine[want.Architecture])
			}
			f.Close()
		}
		if _, err := os.Stat(filepath.Join(dir, "etc/ssl/certs/ca-certificates.crt")); err != nil {
			t.Errorf("%s: rootfs: %v", want, err)
		}
		// Applets link to the image's busybox (absolute links: read, not followed, here).
		for _, p := range []string{"usr/bin/env", "bin/cat", "bin/mkdir"} {
			if target, err := os.Readlink(filepath.Join(dir, p)); err != nil || target != "/bin/busybox" {
				t.Errorf("%s: /%s -> %q (%v), want /bin/busybox", want, p, target, err)
			}
		}
		if target, err := os.Readlink(filepath.Join(dir, "bin", "sh")); err != nil || target != "busybox" {
			t.Errorf("%s: /bin/sh -> %q (%v), want busybox", want, target, err)
		}
	}

	// The registry has the index under every tag, and gives each platform its own image.
	for _, tag := range tags {
		ref, err := name.ParseReference(reg.Ref("deliverhq/deliver", tag))
		if err != nil {
			t.Fatal(err)
		}
		pushed, err := remote.Head(ref, reg.RemoteOptions()...)
		if err != nil {
			t.Fatalf("pushed index %s: %v", ref, err)
		}
		if pushed.Digest.String() != digest || pushed.MediaType != types.OCIImageIndex {
			t.Errorf("registry has %s %s for %s, want the index %s", pushed.MediaType, pushed.Digest, tag, digest)
		}
	}
	byDigest, err := name.ParseReference(reg.DigestRef("deliverhq/deliver", digest))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range wantPlatforms {
		img, err := remote.Image(byDigest, append(reg.RemoteOptions(), remote.WithPlatform(want))...)
		if err != nil {
			t.Fatalf("pulling %s for %s: %v", byDigest, want, err)
		}
		got, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if got != man.Manifests[i].Digest {
			t.Errorf("pulling for %s gave %s, the index lists %s", want, got, man.Manifests[i].Digest)
		}
		checkConfig(t, img, want)
		// The pulled layers unpack to a deliver for that platform.
		dir := filepath.Join(t.TempDir(), "pulled-"+want.Architecture)
		if err := unpack(img, dir); err != nil {
			t.Fatal(err)
		}
		f, err := elf.Open(filepath.Join(dir, "usr", "local", "bin", "deliver"))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != elfMachine[want.Architecture] {
			t.Errorf("pulled for %s: deliver is for %v", want, f.Machine)
		}
		f.Close()
	}

	// Run the host platform's image.
	host, ok := rootfs[runtime.GOARCH]
	if !ok {
		t.Fatalf("no image for this machine's architecture %s", runtime.GOARCH)
	}
	chroot := func(script string) (string, error) {
		cmd := exec.CommandContext(ctx, "unshare", "--mount", "--fork", "chroot", host, "/bin/sh", "-c", script)
		cmd.Env = envs // only what the image itself sets
		cmd.Dir = "/"
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	got, err := chroot("deliver version")
	if err != nil {
		t.Fatalf("unshare --mount --fork chroot ROOTFS /bin/sh -c 'deliver version': %v\n%s", err, got)
	}
	if strings.TrimSpace(got) != testVersion {
		t.Errorf("deliver version printed %q, want %q", got, testVersion)
	}
	// What a GitLab job script does first: a shell with the usual utilities, as root.
	got, err = chroot(`set -e; mkdir -p /builds/x && cd /builds/x && echo ok > f && cat f && id -u && ls /etc/ssl/certs`)
	if err != nil {
		t.Fatalf("a job-like script in the image: %v\n%s", err, got)
	}
	if want := "ok\n0\nca-certificates.crt\n"; got != want {
		t.Errorf("job-like script printed %q, want %q", got, want)
	}
}

// checkConfig checks the image config GitHub and GitLab rely on, and its platform.
func checkConfig(t *testing.T, img v1.Image, want v1.Platform) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != want.OS || cf.Architecture != want.Architecture || cf.Variant != want.Variant {
		t.Errorf("%s: config platform %s/%s/%s", want, cf.OS, cf.Architecture, cf.Variant)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/usr/local/bin/deliver" {
		t.Errorf("%s: Entrypoint %q, want [/usr/local/bin/deliver]", want, cf.Config.Entrypoint)
	}
	if cf.Config.User != "" || cf.Config.WorkingDir != "" {
		t.Errorf("%s: User %q WorkingDir %q: both must be unset (root, the runner's working directory)", want, cf.Config.User, cf.Config.WorkingDir)
	}
	envs := map[string]string{}
	for _, kv := range cf.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		envs[k] = v
	}
	if envs["SSL_CERT_FILE"] != "/etc/ssl/certs/ca-certificates.crt" || !strings.Contains(envs["PATH"], "/usr/local/bin") {
		t.Errorf("%s: Env %v: want PATH with /usr/local/bin and SSL_CERT_FILE", want, cf.Config.Env)
	}
	if cf.Config.Labels["org.opencontainers.image.version"] != testVersion {
		t.Errorf("%s: version label %q, want %q", want, cf.Config.Labels["org.opencontainers.image.version"], testVersion)
	}
	return cf
}

// TestImageRefuses checks what the builder refuses before it writes anything: a binary that is
// not ELF, a dynamically linked one, two binaries for one platform, a platform without its
// busybox, and a busybox that lacks applets of the build machine's busybox.
func TestImageRefuses(t *testing.T) {
	bbDir := busyboxDir(t)
	hostBB := filepath.Join(bbDir, runtime.GOARCH, "busybox")
	// Static ELF binaries of each architecture that are not deliver serve as stand-ins: the
	// builder reads only their ELF headers before it refuses.
	amd64, arm64 := filepath.Join(bbDir, "amd64", "busybox"), filepath.Join(bbDir, "arm64", "busybox")
	text := filepath.Join(t.TempDir(), "deliver.sh")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dynamic, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	// A busybox directory with no arm64, and one whose arm64 busybox lacks applets.
	noArm := t.TempDir()
	lacking := t.TempDir()
	for _, dir := range []string{noArm, lacking} {
		if err := os.MkdirAll(filepath.Join(dir, runtime.GOARCH), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(hostBB, filepath.Join(dir, runtime.GOARCH, "busybox")); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(arm64)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("\x00chroot\x00"), []byte("\x00chroox\x00"))
	if err := os.MkdirAll(filepath.Join(lacking, "arm64"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lacking, "arm64", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		usage   bool
		message string
	}{
		{"not ELF", []string{"--deliver", text}, true, "not an ELF binary"},
		{"dynamic", []string{"--deliver", dynamic}, false, "dynamically linked"},
		{"two for one platform", []string{"--deliver", amd64, "--deliver", amd64}, true, "two deliver binaries for amd64"},
		{"no busybox for arm64", []string{"--deliver", amd64, "--deliver", arm64, "--busybox-dir", noArm}, false, "no busybox-static for arm64"},
		{"busybox lacks applets", []string{"--deliver", arm64, "--busybox-dir", lacking}, false, "lacks the applets chroot"},
		{"bad push reference", []string{"--deliver", amd64, "--push", "Not A/Ref:"}, true, "--push"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "image")
			args := append([]string{"--busybox-dir", bbDir, "--out", out}, tc.args...)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("run %v: error %v, want one saying %q", tc.args, err, tc.message)
			}
			if errors.Is(err, errUsage) != tc.usage {
				t.Errorf("usage error (exit 2): %v, want %v", errors.Is(err, errUsage), tc.usage)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a refused build wrote %s (%v)", out, err)
			}
			if stdout.Len() > 0 {
				t.Errorf("a refused build printed %q", stdout.String())
			}
		})
	}
}

// unpack writes the flattened file system of img (mutate.Extract applies the layers in order,
// whiteouts included) under dir.
func unpack(img v1.Image, dir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(os.PathSeparator)) && p != filepath.Clean(dir) {
			return fmt.Errorf("layer entry %q escapes the root", h.Name)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm|modeBits(h.Mode)); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&os.ModePerm)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := os.Link(filepath.Join(dir, filepath.FromSlash(h.Linkname)), p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("layer entry %q: unsupported type %c", h.Name, h.Typeflag)
		}
	}
}

// modeBits keeps the sticky bit of a tar mode (/tmp is 1777).
func modeBits(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}
