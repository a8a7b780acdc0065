package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/deliverhq/deliver/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const testVersion = "v0.0.0-imagetest"

// buildDeliver builds the static deliver binary the image carries.
func buildDeliver(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "deliver")
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/deliverhq/deliver/step.version="+testVersion,
		"-o", bin, "github.com/deliverhq/deliver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built deliver in %s", time.Since(start).Round(100*time.Millisecond))
	return bin
}

// TestImage builds deliver's image the way `make image` does (through run, the command's own
// entry point), reads it back from the OCI layout, unpacks its root file system by flattening
// the layers with mutate.Extract, and runs `/bin/sh -c 'deliver version'` chrooted into it in a
// new mount namespace: the image is self-contained (a static binary, a static shell, PATH from
// the image config), which is all GitHub's and GitLab's runners need of it. It also pushes the
// image to a test registry with --push and checks the digest there.
func TestImage(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test chroots into the image: CI must run it as root")
		}
		t.Skip("chroot needs root (CI runs as root)")
	}
	for _, tool := range []string{"unshare", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (util-linux, coreutils) is required: %v", tool, err)
		}
	}
	deliver := buildDeliver(t)
	cache, err := cacheDir()
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := findBusybox(cache)
	if err != nil {
		t.Fatalf("no static busybox (.ci/run caches Debian's busybox-static): %v", err)
	}
	// Run the command as `make image` does, built without -race: compressing 50 MB under the
	// race detector takes minutes.
	tool := filepath.Join(t.TempDir(), "image")
	if out, err := exec.Command("go", "build", "-o", tool, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./hack/image: %v\n%s", err, out)
	}
	reg := testenv.NewRegistry(t)
	out := filepath.Join(t.TempDir(), "image")
	pushRef := reg.Ref("deliverhq/deliver", testVersion)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	image := func(out string, extra ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, tool, append([]string{"--deliver", deliver, "--busybox", busybox, "--out", out, "--version", testVersion}, extra...)...)
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
	digest := image(out, "--push", pushRef)
	// Same inputs, same digest.
	if again := image(filepath.Join(t.TempDir(), "again")); again != digest {
		t.Errorf("rebuilding gave %s, the first build %s: the build is not reproducible", again, digest)
	}

	// Read the image back from the layout.
	idx, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	man, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Manifests) != 1 {
		t.Fatalf("layout holds %d manifests, want 1", len(man.Manifests))
	}
	desc := man.Manifests[0]
	if desc.Digest.String() != digest {
		t.Errorf("layout digest %s, printed %s", desc.Digest, digest)
	}
	if desc.Annotations["org.opencontainers.image.ref.name"] != testVersion {
		t.Errorf("layout ref name %q, want %q", desc.Annotations["org.opencontainers.image.ref.name"], testVersion)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}

	// The registry has the same image.
	ref, err := name.ParseReference(pushRef)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := remote.Head(ref, reg.RemoteOptions()...)
	if err != nil {
		t.Fatalf("pushed image: %v", err)
	}
	if pushed.Digest.String() != digest {
		t.Errorf("registry has %s, layout %s", pushed.Digest, digest)
	}

	// The config GitHub and GitLab rely on.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/usr/local/bin/deliver" {
		t.Errorf("Entrypoint %q, want [/usr/local/bin/deliver]", cf.Config.Entrypoint)
	}
	if cf.Config.User != "" || cf.Config.WorkingDir != "" {
		t.Errorf("User %q WorkingDir %q: both must be unset (root, the runner's working directory)", cf.Config.User, cf.Config.WorkingDir)
	}
	envs := map[string]string{}
	for _, kv := range cf.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		envs[k] = v
	}
	if envs["SSL_CERT_FILE"] != "/etc/ssl/certs/ca-certificates.crt" || !strings.Contains(envs["PATH"], "/usr/local/bin") {
		t.Errorf("Env %v: want PATH with /usr/local/bin and SSL_CERT_FILE", cf.Config.Env)
	}
	size, err := compressedSize(img)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	t.Logf("image %s: %d layers, %d bytes compressed (%.2f MiB)", digest, len(layers), size, float64(size)/(1<<20))

	// Unpack and run.
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	start := time.Now()
	if err := unpack(img, rootfs); err != nil {
		t.Fatal(err)
	}
	t.Logf("unpacked the image in %s", time.Since(start).Round(10*time.Millisecond))
	for _, p := range []string{"bin/sh", "bin/busybox", "usr/local/bin/deliver", "etc/ssl/certs/ca-certificates.crt"} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("rootfs: %v", err)
		}
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("/bin/sh -> %q (%v), want busybox", target, err)
	}
	chroot := func(script string) (string, error) {
		cmd := exec.CommandContext(ctx, "unshare", "--mount", "--fork", "chroot", rootfs, "/bin/sh", "-c", script)
		cmd.Env = cf.Config.Env // only what the image itself sets
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
