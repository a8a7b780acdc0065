package configrepo

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// TestDropLargeBlobs feeds dropLargeBlobs packs that git itself made, with deltas against
// the dropped blobs and among the kept ones, as offset deltas (what deliver asks servers for)
// and as reference deltas (servers without ofs-delta): the blobs over the limit and the deltas
// of such blobs are gone, every other object is there and reads back as git wrote it.
func TestDropLargeBlobs(t *testing.T) {
	t.Parallel()
	const limit = 4096
	big := strings.Repeat("a line of a large file that compresses and deltifies well\n", 200) // 11.8 kB
	files := map[string]string{
		"big.txt":        big,
		"big-copy.txt":   big + "one more line\n", // a delta of big.txt, also over the limit
		"small.yaml":     strings.Repeat("key: value\n", 100),
		"small-too.yaml": strings.Repeat("key: value\n", 100) + "other: 1\n", // a delta of small.yaml
		"tiny.txt":       "tiny\n",
	}
	work := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(stdin io.Reader, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Stdin = stdin
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull,
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	git(nil, "init", "-q")
	git(nil, "add", ".")
	git(nil, "commit", "-qm", "files")
	objects := git(nil, "rev-list", "--objects", "HEAD")
	hashOf := func(name string) plumbing.Hash {
		return plumbing.NewHash(strings.TrimSpace(string(git(nil, "rev-parse", "HEAD:"+name))))
	}

	for _, tt := range []struct {
		name  string
		flags []string
	}{
		{"offset deltas", []string{"--delta-base-offset"}},
		{"reference deltas", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pack := git(bytes.NewReader(objects), append([]string{"pack-objects", "--stdout", "--window=50", "--depth=50", "--no-reuse-delta"}, tt.flags...)...)
			// The test proves something only if git made deltas, of both kinds of blob.
			packFile := filepath.Join(t.TempDir(), "p.pack")
			if err := os.WriteFile(packFile, pack, 0o644); err != nil {
				t.Fatal(err)
			}
			git(nil, "index-pack", packFile)
			verify := string(git(nil, "verify-pack", "-v", strings.TrimSuffix(packFile, ".pack")+".idx"))
			for _, name := range []string{"big.txt", "big-copy.txt", "small.yaml", "small-too.yaml"} {
				if !strings.Contains(verify, hashOf(name).String()) {
					t.Fatalf("%s is not in the pack:\n%s", name, verify)
				}
			}
			if !deltaIn(verify, hashOf("big.txt"), hashOf("big-copy.txt")) || !deltaIn(verify, hashOf("small.yaml"), hashOf("small-too.yaml")) {
				t.Fatalf("git made no delta of one of the pairs; the test proves nothing:\n%s", verify)
			}

			st := filesystem.NewStorageWithOptions(osfs.New(t.TempDir()), cache.NewObjectLRU(cache.MiByte), filesystem.Options{})
			dropped, err := dropLargeBlobs(bytes.NewReader(pack), st, limit, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			for name, content := range files {
				h := hashOf(name)
				obj, err := st.EncodedObject(plumbing.BlobObject, h)
				if len(content) > limit {
					if !errors.Is(err, plumbing.ErrObjectNotFound) {
						t.Errorf("%s (%d bytes) was kept: %v", name, len(content), err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s (%d bytes) is missing: %v", name, len(content), err)
					continue
				}
				r, _ := obj.Reader()
				got, _ := io.ReadAll(r)
				if string(got) != content {
					t.Errorf("%s reads back as %q", name, got)
				}
			}
			// Whichever of the two large blobs git stored whole is named, with its size.
			if len(dropped) != 1 {
				t.Errorf("dropped = %v, want the one large blob stored whole", dropped)
			}
			for h, size := range dropped {
				if (h != hashOf("big.txt") || size != int64(len(big))) && (h != hashOf("big-copy.txt") || size != int64(len(files["big-copy.txt"]))) {
					t.Errorf("dropped %s of %d bytes, not one of the large blobs", h, size)
				}
			}
			commit, err := st.EncodedObject(plumbing.CommitObject, plumbing.NewHash(strings.TrimSpace(string(git(nil, "rev-parse", "HEAD")))))
			if err != nil || commit.Type() != plumbing.CommitObject {
				t.Errorf("the commit is missing: %v", err)
			}
		})
	}
}

// deltaIn reports whether verify-pack -v output shows one of a and b stored as a delta of the
// other.
func deltaIn(verify string, a, b plumbing.Hash) bool {
	for _, line := range strings.Split(verify, "\n") {
		f := strings.Fields(line)
		// sha type size size-in-pack offset depth base
		if len(f) == 7 && (f[0] == a.String() && f[6] == b.String() || f[0] == b.String() && f[6] == a.String()) {
			return true
		}
	}
	return false
}

func TestOFSOffsetRoundTrip(t *testing.T) {
	t.Parallel()
	for _, off := range []int64{1, 127, 128, 129, 16383, 16384, 16511, 16512, 1 << 20, 1<<40 + 12345} {
		got, err := readOFSOffset(bytes.NewReader(ofsOffset(off)))
		if err != nil || got != off {
			t.Errorf("offset %d encodes as %x, reads back as %d, %v", off, ofsOffset(off), got, err)
		}
	}
}
