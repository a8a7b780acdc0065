package reliability_test

import (
	"bytes"
	"compress/flate"
	"crypto/sha1" //nolint:gosec // git's pack checksum
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// Memory bounds of a deploy whatever the config repo holds or the git server answers.
const (
	// memoryBound is the peak RSS a deploy may reach with a 1 GiB file in the config repo.
	memoryBound = 150 << 20
	// hugeFileSize is that file's size: 1 GiB of zero bytes (a sparse file's content).
	hugeFileSize = 1 << 30
	// hugeTimeout bounds a deploy of a repo with that file.
	hugeTimeout = 3 * time.Minute
)

// TestHugeFileElsewhereInRepo: a 1 GiB file elsewhere in the config repo costs a deploy
// nothing: it is not fetched (the server filters it out, or deliver drops it from the pack of a
// server that does not support partial clone), not written, and stays untouched by the commit.
// The deploy succeeds within memoryBound.
func TestHugeFileElsewhereInRepo(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts []testenv.GitOption
	}{
		{"server filters", nil},
		{"server without filters", []testenv.GitOption{testenv.WithoutFilters()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServers(t, webApp("unused"), fixture.Options{GitOpts: tt.opts})
			huge := addHugeFile(t, &s.Repo, "assets/huge.bin")
			digest := s.PushImage(t, "team/web", "1.4.3")
			old := s.Head(t)
			// A server without filters sends the GiB, which deliver inflates to drop it: seconds
			// of CPU on a loaded machine. The test is of memory, not time.
			r := runWithin(t, hugeTimeout, nil, args([]string{"deploy", "--env", "staging", "--no-apply",
				"--image", "web=" + s.Reg.Ref("team/web", "1.4.3"), "--push-timeout", hugeTimeout.String()}, s.GitArgs())...)
			t.Logf("%s: %s", tt.name, firstLine(r))
			if r.code != step.ExitOK {
				t.Fatalf("deploy failed:\n%s", r)
			}
			if r.maxRSS > memoryBound {
				t.Errorf("peak RSS %d MiB with a 1 GiB file in the repo, want at most %d MiB", r.maxRSS>>20, memoryBound>>20)
			}
			tip := s.Head(t)
			if tip == old || !strings.Contains(r.stdout, "changed=true commit="+tip) {
				t.Errorf("the deploy did not push its commit (tip %s, was %s):\n%s", tip, old, r)
			}
			if !strings.Contains(s.File(t, "overlays/staging/kustomization.yaml"), digest) {
				t.Errorf("the overlay does not pin %s", digest)
			}
			if got := blobAt(t, &s.Repo, "assets/huge.bin"); got != huge {
				t.Errorf("assets/huge.bin is blob %s after the deploy, was %s", got, huge)
			}
			checkTempClean(t, r)
		})
	}
}

// TestHugeFileReferenced: the same file used by the overlay (as a configMapGenerator file) is
// refused by its size, before it is read: exit 2 naming the file, nothing pushed, memory
// bounded.
func TestHugeFileReferenced(t *testing.T) {
	t.Parallel()
	s := newServers(t, webApp("unused"), fixture.Options{Edit: func(f map[string]string) {
		f["overlays/staging/kustomization.yaml"] += "configMapGenerator:\n  - name: huge\n    files:\n      - huge.bin\n"
	}})
	addHugeFile(t, &s.Repo, "overlays/staging/huge.bin")
	s.PushImage(t, "team/web", "1.4.3")
	old := s.Head(t)
	r := runWithin(t, hugeTimeout, nil, args([]string{"deploy", "--env", "staging", "--no-apply",
		"--image", "web=" + s.Reg.Ref("team/web", "1.4.3"), "--push-timeout", hugeTimeout.String()}, s.GitArgs())...)
	t.Logf("%s", firstLine(r))
	if r.code != step.ExitUsage {
		t.Fatalf("exit %d, want %d:\n%s", r.code, step.ExitUsage, r)
	}
	for _, want := range []string{"overlays/staging/huge.bin", "larger than the 8388608 bytes"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	if r.maxRSS > memoryBound {
		t.Errorf("peak RSS %d MiB, want at most %d MiB", r.maxRSS>>20, memoryBound>>20)
	}
	if tip := s.Head(t); tip != old {
		t.Errorf("the branch moved from %s to %s", old, tip)
	}
	checkTempClean(t, r)
}

// TestHugeGitErrorPage: a git server (or a proxy in front of it) answering 401 with a 100 MB
// page: exit 4 with a short message, the page neither printed whole nor read whole into memory.
func TestHugeGitErrorPage(t *testing.T) {
	t.Parallel()
	s := newServers(t, webApp("unused"), fixture.Options{GitProxy: true})
	s.PushImage(t, "team/web", "1.4.3")
	old := s.Head(t)
	s.Proxy.HTTPStatusBody(401, faultproxy.HugeBody(100<<20))
	r := runWithin(t, pushTimeout+5*time.Second, nil, args([]string{"deploy", "--env", "staging", "--no-apply",
		"--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, timeoutFlags, s.GitArgs())...)
	t.Logf("%s", firstLine(r))
	if r.code != step.ExitAuth {
		t.Fatalf("exit %d, want %d:\n%.2000s", r.code, step.ExitAuth, r)
	}
	if n := len(r.stderr) + len(r.stdout); n > 16<<10 {
		t.Errorf("deliver printed %d KiB for the error page, want at most 16 KiB:\n%.2000s", n>>10, r.stderr)
	}
	if !strings.Contains(r.stderr, "config repo refused the credentials") {
		t.Errorf("stderr does not say the credentials were refused:\n%.2000s", r.stderr)
	}
	if r.maxRSS > memoryBound {
		t.Errorf("peak RSS %d MiB for a 100 MB error page, want at most %d MiB", r.maxRSS>>20, memoryBound>>20)
	}
	if tip := s.Head(t); tip != old {
		t.Errorf("the branch moved from %s to %s", old, tip)
	}
	checkTempClean(t, r)
}

// addHugeFile commits a hugeFileSize file of zero bytes at path on the config repo's main
// branch, without ever writing or hashing a GiB: the blob comes in a pack made once per test
// binary (hugeBlobPack), copied into the repository, and the commit is made with git's
// plumbing. It returns the blob's hash.
func addHugeFile(t *testing.T, r *fixture.Repo, path string) string {
	t.Helper()
	blob, pack := hugeBlobPack(t)
	bare := r.Git.BareDir(r.Name)
	for _, ext := range []string{".pack", ".idx"} {
		data, err := os.ReadFile(pack + ext)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bare, "objects", "pack", filepath.Base(pack)+ext), data, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	index := filepath.Join(t.TempDir(), "index")
	git := func(args ...string) string { return runGit(t, bare, []string{"GIT_INDEX_FILE=" + index}, args...) }
	git("read-tree", "refs/heads/main")
	git("update-index", "--add", "--cacheinfo", "100644,"+blob+","+path)
	tree := git("write-tree")
	commit := git("commit-tree", tree, "-p", "refs/heads/main", "-m", "Add "+path+" (1 GiB)")
	git("update-ref", "refs/heads/main", commit)
	return blob
}

// blobAt is the blob of path at the tip of main.
func blobAt(t *testing.T, r *fixture.Repo, path string) string {
	t.Helper()
	return runGit(t, r.Git.BareDir(r.Name), nil, "rev-parse", "refs/heads/main:"+path)
}

// runGit runs git on the bare repository gitDir, isolated from the user's configuration, and
// returns its trimmed output.
func runGit(t *testing.T, gitDir string, env []string, args ...string) string {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command("git", args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_DIR=" + gitDir,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.invalid",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.invalid"}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

var (
	hugeOnce          sync.Once
	hugeBlob, hugePkg string
	hugeErr           error
)

// hugeBlobPack returns the hash of a blob of hugeFileSize zero bytes and the path (without
// .pack/.idx) of a git pack holding only it, made once per test binary in the binary's
// directory (removed by TestMain).
//
// The pack is about 1 MB and takes no GiB to make: deflate codes a run of zeros as copies of
// the zeros before it, so the compressed form of each further MiB of zeros, once the window is
// full of zeros, is the same bytes, repeated. git index-pack then checks the pack (inflating
// the GiB once, streaming) and indexes it.
func hugeBlobPack(t *testing.T) (blob, pack string) {
	t.Helper()
	deliverBin(t) // creates binDir
	hugeOnce.Do(func() {
		var data []byte
		if data, hugeErr = zeroBlobPack(hugeFileSize); hugeErr != nil {
			return
		}
		sum := sha1.Sum(data) //nolint:gosec // git's pack checksum
		data = append(data, sum[:]...)
		hugePkg = filepath.Join(binDir, "pack-"+hex.EncodeToString(sum[:]))
		if hugeErr = os.WriteFile(hugePkg+".pack", data, 0o444); hugeErr != nil {
			return
		}
		out, err := exec.Command("git", "index-pack", hugePkg+".pack").CombinedOutput()
		if err != nil {
			hugeErr = fmt.Errorf("git index-pack: %v\n%s", err, out)
			return
		}
		idx, err := os.Open(hugePkg + ".idx")
		if err != nil {
			hugeErr = err
			return
		}
		defer idx.Close()
		show := exec.Command("git", "show-index")
		show.Stdin = idx
		out, err = show.Output()
		if f := strings.Fields(string(out)); err != nil || len(f) < 2 {
			hugeErr = fmt.Errorf("git show-index: %v: %q", err, out)
			return
		}
		hugeBlob = strings.Fields(string(out))[1]
	})
	if hugeErr != nil {
		t.Fatalf("making the pack of a 1 GiB blob: %v", hugeErr)
	}
	return hugeBlob, hugePkg
}

// zeroBlobPack returns a pack (without its trailing checksum) holding one blob of size zero
// bytes; size must be a multiple of 1 MiB and at least 2 MiB.
func zeroBlobPack(size int64) ([]byte, error) {
	const chunk = 1 << 20
	if size%chunk != 0 || size < 2*chunk {
		return nil, fmt.Errorf("size %d is not a multiple of %d of at least two", size, chunk)
	}
	var b bytes.Buffer
	b.WriteString("PACK")
	_ = binary.Write(&b, binary.BigEndian, [2]uint32{2, 1}) // version 2, one object
	// The object header: type blob (3), then the size, 4 bits and then 7 bits a byte.
	n := uint64(size)
	c := byte(3<<4) | byte(n&0x0f)
	for n >>= 4; n != 0; n >>= 7 {
		b.WriteByte(c | 0x80)
		c = byte(n & 0x7f)
	}
	b.WriteByte(c)
	// zlib: header, deflate data, Adler-32 of the content.
	b.Write([]byte{0x78, 0xda})
	var deflated bytes.Buffer
	fw, err := flate.NewWriter(&deflated, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, chunk)
	var repeat []byte
	for i := 0; i < 2; i++ {
		start := deflated.Len()
		if _, err := fw.Write(zeros); err != nil {
			return nil, err
		}
		if err := fw.Flush(); err != nil { // ends on a byte boundary
			return nil, err
		}
		repeat = deflated.Bytes()[start:]
	}
	b.Write(deflated.Bytes())
	for i := int64(2); i < size/chunk; i++ {
		b.Write(repeat)
	}
	b.Write([]byte{0x03, 0x00}) // a last, empty block with fixed codes
	// Adler-32 of zeros: the byte sum stays 1, the sum of sums is the length.
	_ = binary.Write(&b, binary.BigEndian, uint32(size%65521)<<16|1)
	return b.Bytes(), nil
}
