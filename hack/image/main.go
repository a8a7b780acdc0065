// Command image builds deliver's container image without a Docker engine: the same file system
// as the Dockerfile's (a static deliver binary, Debian's static busybox as /bin/sh with its
// applets, Debian's CA bundle), the same ENTRYPOINT and ENV, written as an OCI image layout and
// optionally pushed to a registry. `make image` runs it.
//
//	go run ./hack/image --deliver bin/deliver --out bin/image [--push ghcr.io/deliverhq/deliver:v1.2.3]
//
// The busybox comes from --busybox, else the installed busybox-static package, else a copy
// cached outside the clone ($DELIVER_CACHE, $XDG_CACHE_HOME/deliver or ~/.cache/deliver),
// fetched on first use with `apt-get download busybox-static`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
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

// run parses args, builds the image, writes the layout and pushes. It prints the image digest
// on stdout and a summary on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	deliver := fs.String("deliver", "bin/deliver", "the static deliver binary (make build)")
	busybox := fs.String("busybox", os.Getenv("DELIVER_BUSYBOX"), "a static busybox (default: busybox-static, installed or cached)")
	caBundle := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "the PEM CA bundle (Debian's ca-certificates)")
	out := fs.String("out", "bin/image", "OCI image layout directory to write (replaced)")
	tag := fs.String("tag", "", "ref name annotation in the layout (default: --version)")
	version := fs.String("version", "dev", "image version label")
	push := fs.String("push", "", "also push the image to this reference (REGISTRY/REPO:TAG)")
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
	if *busybox == "" {
		cache, err := cacheDir()
		if err != nil {
			return err
		}
		if *busybox, err = findBusybox(cache); err != nil {
			return err
		}
	}
	img, err := buildImage(spec{Deliver: *deliver, Busybox: *busybox, CABundle: *caBundle, Version: *version, Created: sourceDate()})
	if err != nil {
		return err
	}
	refName := *tag
	if refName == "" {
		refName = *version
	}
	if err := writeLayout(*out, img, refName); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	size, err := compressedSize(img)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "image: wrote %s (%s, busybox %s), %d bytes compressed (%.1f MiB)\n",
		*out, digest, *busybox, size, float64(size)/(1<<20))
	if *push != "" {
		var opts []name.Option
		if *insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(*push, opts...)
		if err != nil {
			return fmt.Errorf("%w: --push %q: %v", errUsage, *push, err)
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Fprintf(stderr, "image: pushed %s@%s\n", ref.Context(), digest)
	}
	fmt.Fprintln(stdout, digest)
	return nil
}

// writeLayout writes img as the only image of a fresh OCI layout at dir.
func writeLayout(dir string, img v1.Image, refName string) error {
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
	if err := p.AppendImage(img, opts...); err != nil {
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
