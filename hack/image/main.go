// Command image builds deliver's container image without a Docker engine, for every platform
// it is given a deliver binary for: per platform, the same file system as the Dockerfile's (the
// static deliver binary, Debian's static busybox as /bin/sh with its applets, Debian's CA
// bundle), the same ENTRYPOINT and ENV; all platforms in one OCI image index, written as an OCI
// image layout and optionally pushed to a registry under one or more tags. `make image` runs it.
//
//	go run ./hack/image --deliver bin/linux-amd64/deliver --deliver bin/linux-arm64/deliver \
//	    --out bin/image [--push ghcr.io/deliverhq/deliver:v1.2.3 --push ghcr.io/deliverhq/deliver:v1]
//
// Each binary's platform is read from its ELF header. The busybox of each platform comes from
// --busybox-dir (<dir>/<arch>/busybox), by default the copy `make image-deps` caches outside the
// clone ($DELIVER_CACHE, $XDG_CACHE_HOME/deliver or ~/.cache/deliver, then busybox-static). It
// prints the digest of the index on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/authn/github"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

// run parses args, builds the index, writes the layout and pushes. It prints the index digest
// on stdout and a summary on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var delivers, pushes []string
	fs.Func("deliver", "a static deliver binary, one per platform (repeat; default bin/deliver)", func(s string) error {
		delivers = append(delivers, s)
		return nil
	})
	busyboxDir := fs.String("busybox-dir", "", "directory with <arch>/busybox, static (default: the cache `make image-deps` fills)")
	caBundle := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "the PEM CA bundle (Debian's ca-certificates)")
	out := fs.String("out", "bin/image", "OCI image layout directory to write (replaced)")
	tag := fs.String("tag", "", "ref name annotation in the layout (default: --version)")
	version := fs.String("version", "dev", "image version label")
	fs.Func("push", "also push the index to this reference, REGISTRY/REPO:TAG (repeat for more tags)", func(s string) error {
		pushes = append(pushes, s)
		return nil
	})
	insecure := fs.Bool("insecure", false, "reach the --push registry over plain HTTP")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if len(delivers) == 0 {
		delivers = []string{"bin/deliver"}
	}
	var refs []name.Reference
	for _, p := range pushes {
		var opts []name.Option
		if *insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(p, opts...)
		if err != nil {
			return fmt.Errorf("%w: --push %q: %v", errUsage, p, err)
		}
		refs = append(refs, ref)
	}
	if *busyboxDir == "" {
		cache, err := cacheDir()
		if err != nil {
			return err
		}
		*busyboxDir = filepath.Join(cache, "busybox-static")
	}
	// The applets come from the busybox of this machine's architecture, the one that runs here.
	hostBusybox, err := findBusybox(*busyboxDir, runtime.GOARCH)
	if err != nil {
		return err
	}
	applets, err := listApplets(hostBusybox)
	if err != nil {
		return err
	}
	created := sourceDate()
	var specs []spec
	for _, d := range delivers {
		arch, err := elfArch(d)
		if err != nil {
			return fmt.Errorf("%w: --deliver: %v", errUsage, err)
		}
		busybox, err := findBusybox(*busyboxDir, arch)
		if err != nil {
			return err
		}
		specs = append(specs, spec{Deliver: d, Busybox: busybox, CABundle: *caBundle, Arch: arch, Applets: applets, Version: *version, Created: created})
	}
	idx, err := buildIndex(specs)
	if err != nil {
		return err
	}
	refName := *tag
	if refName == "" {
		refName = *version
	}
	if err := writeLayout(*out, idx, refName); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	if err := summarize(stderr, *out, idx); err != nil {
		return err
	}
	for _, ref := range refs {
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Fprintf(stderr, "image: pushed %s (%s)\n", ref, digest)
	}
	fmt.Fprintln(stdout, digest)
	return nil
}

// keychain finds registry credentials: the Docker config (docker login, $DOCKER_CONFIG), then
// GITHUB_ACTOR and GITHUB_TOKEN for ghcr.io, as a GitHub Actions job has them.
var keychain = authn.NewMultiKeychain(authn.DefaultKeychain, github.Keychain)

// summarize writes the index digest and, per platform, the manifest digest and compressed size.
func summarize(w io.Writer, out string, idx v1.ImageIndex) error {
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	man, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "image: wrote %s: index %s\n", out, digest)
	for _, d := range man.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		size, err := compressedSize(img)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "image:   %s %s, %d bytes compressed (%.1f MiB)\n", d.Platform, d.Digest, size, float64(size)/(1<<20))
	}
	return nil
}

// writeLayout writes idx as the only entry of a fresh OCI layout at dir.
func writeLayout(dir string, idx v1.ImageIndex, refName string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the OCI layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": refName}))
	}
	if err := p.AppendIndex(idx, opts...); err != nil {
		return fmt.Errorf("writing the OCI layout %s: %w", dir, err)
	}
	return nil
}

// sourceDate is the timestamp of the image and its files: $SOURCE_DATE_EPOCH when set (as
// reproducible builds define it), else the Unix epoch, so that a rebuild of the same inputs
// gives the same digest.
func sourceDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Unix(0, 0).UTC()
}
