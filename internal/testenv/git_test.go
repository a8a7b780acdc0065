package testenv_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/deliverhq/deliver/internal/testenv"
)

const kustomization = "resources:\n- deployment.yaml\nimages:\n- name: web\n  newTag: \"1.0\"\n"

func seedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "overlays", "prod", "kustomization.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// commitFile writes path in the worktree of repo and commits it.
func commitFile(t *testing.T, repo *git.Repository, path, content, msg string) plumbing.Hash {
	t.Helper()
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(wt.Filesystem.Root(), filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add(path); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit(msg, &git.CommitOptions{
		Author: &object.Signature{Name: "ci", Email: "ci@example.invalid", When: time.Now()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestGitServer(t *testing.T) {
	t.Parallel()
	s := testenv.NewGitServer(t)
	cloneURL, err := s.CreateRepo("team/config", "main", seedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if cloneURL != s.URL+"/team/config.git" || strings.Contains(cloneURL, s.Password) {
		t.Fatalf("clone URL = %q, want %s/team/config.git without credentials", cloneURL, s.URL)
	}
	auth := &githttp.BasicAuth{Username: s.Username, Password: s.Password}

	t.Run("clone commit push read back", func(t *testing.T) {
		before := s.Requests()
		repo, err := git.PlainClone(t.TempDir(), false, &git.CloneOptions{
			URL: cloneURL, Auth: auth, ReferenceName: plumbing.NewBranchReferenceName("main"),
			SingleBranch: true, Depth: 1,
		})
		if err != nil {
			t.Fatalf("clone: %v", err)
		}
		wt, _ := repo.Worktree()
		got, err := os.ReadFile(filepath.Join(wt.Filesystem.Root(), "overlays", "prod", "kustomization.yaml"))
		if err != nil || string(got) != kustomization {
			t.Fatalf("seeded file in clone = %q, %v; want %q", got, err, kustomization)
		}
		seed, err := s.Head("team/config", "main")
		if err != nil {
			t.Fatal(err)
		}
		pushed := commitFile(t, repo, "overlays/prod/VERSION", "2.0\n", "Set web to 2.0")
		if err := repo.Push(&git.PushOptions{Auth: auth}); err != nil {
			t.Fatalf("push: %v", err)
		}

		content, err := s.ReadFile("team/config", "main", "overlays/prod/VERSION")
		if err != nil || string(content) != "2.0\n" {
			t.Fatalf("ReadFile = %q, %v; want %q", content, err, "2.0\n")
		}
		if _, err := s.ReadFile("team/config", "main", "nope.yaml"); !errors.Is(err, object.ErrFileNotFound) {
			t.Errorf("ReadFile(missing) error = %v, want object.ErrFileNotFound", err)
		}
		head, err := s.Head("team/config", "main")
		if err != nil || head != pushed {
			t.Fatalf("Head = %s, %v; want pushed commit %s", head, err, pushed)
		}
		log, err := s.Log("team/config", "main")
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != 2 || log[0].Hash != pushed || log[1].Hash != seed || log[0].Message != "Set web to 2.0" {
			t.Fatalf("Log = %v, want [%s %s] newest first", log, pushed, seed)
		}
		// go-git sends credentials up front: ref discovery + upload-pack for
		// the clone, ref discovery + receive-pack for the push.
		if n := s.Requests() - before; n != 4 {
			t.Errorf("Requests() grew by %d, want 4", n)
		}
	})

	t.Run("wrong or missing credentials", func(t *testing.T) {
		for _, a := range []*githttp.BasicAuth{{Username: s.Username, Password: "wrong"}, nil} {
			opts := &git.CloneOptions{URL: cloneURL}
			if a != nil {
				opts.Auth = a
			}
			_, err := git.PlainClone(t.TempDir(), false, opts)
			if !errors.Is(err, transport.ErrAuthenticationRequired) && !errors.Is(err, transport.ErrAuthorizationFailed) {
				t.Errorf("clone with auth %v: error = %v, want an authentication error", a, err)
			}
		}
	})

	t.Run("pre-receive hook rejects", func(t *testing.T) {
		if _, err := s.CreateRepo("guarded", "main", ""); err != nil {
			t.Fatal(err)
		}
		const msg = "policy: pushes to main are frozen"
		if err := s.SetHook("guarded", "pre-receive", "echo '"+msg+"' >&2\nexit 1\n"); err != nil {
			t.Fatal(err)
		}
		before, err := s.Head("guarded", "main")
		if err != nil {
			t.Fatal(err)
		}
		repo, err := git.PlainClone(t.TempDir(), false, &git.CloneOptions{URL: s.RepoURL("guarded"), Auth: auth})
		if err != nil {
			t.Fatal(err)
		}
		commitFile(t, repo, "a.txt", "a\n", "Add a")
		var progress bytes.Buffer
		err = repo.Push(&git.PushOptions{Auth: auth, Progress: &progress})
		if err == nil || !strings.Contains(err.Error(), "pre-receive hook declined") {
			t.Fatalf("push error = %v, want the hook's rejection", err)
		}
		// The hook's own words travel on the side band, not in the status report.
		if !strings.Contains(progress.String(), msg) {
			t.Errorf("push progress = %q, want it to contain %q", progress.String(), msg)
		}
		if after, err := s.Head("guarded", "main"); err != nil || after != before {
			t.Errorf("Head after rejected push = %s, %v; want unchanged %s", after, err, before)
		}
	})

	t.Run("empty repository", func(t *testing.T) {
		if _, err := s.CreateRepo("empty", "trunk", ""); err != nil {
			t.Fatal(err)
		}
		log, err := s.Log("empty", "trunk")
		if err != nil || len(log) != 1 {
			t.Fatalf("Log = %v, %v; want one initial commit", log, err)
		}
		tree, err := log[0].Tree()
		if err != nil || len(tree.Entries) != 0 {
			t.Fatalf("initial tree = %v, %v; want empty", tree, err)
		}
		if _, err := s.CreateRepo("empty", "trunk", ""); err == nil {
			t.Error("CreateRepo of an existing repository succeeded")
		}
	})
}

func TestGitServerOptions(t *testing.T) {
	t.Parallel()
	const latency = 50 * time.Millisecond
	s := testenv.NewGitServer(t, testenv.WithLatency(latency), testenv.WithCredentials("deployer", "hunter2"))
	if s.Username != "deployer" || s.Password != "hunter2" {
		t.Fatalf("credentials = %q/%q, want deployer/hunter2", s.Username, s.Password)
	}
	url, err := s.CreateRepo("slow", "main", "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = git.PlainClone(t.TempDir(), false, &git.CloneOptions{
		URL: url, Auth: &githttp.BasicAuth{Username: "deployer", Password: "hunter2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A clone is two requests (ref discovery, upload-pack).
	if d := time.Since(start); d < 2*latency {
		t.Errorf("clone took %s, want at least %s with latency %s per request", d, 2*latency, latency)
	}
}

// TestGitServerFilters: the server allows partial clone (the "filter" capability, as GitHub,
// GitLab and Gitea do) unless WithoutFilters, and then a filtered fetch leaves large blobs out.
func TestGitServerFilters(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts []testenv.GitOption
		want bool
	}{
		{"default", nil, true},
		{"WithoutFilters", []testenv.GitOption{testenv.WithoutFilters()}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testenv.NewGitServer(t, tt.opts...)
			dir := seedDir(t)
			if err := os.WriteFile(filepath.Join(dir, "large.bin"), bytes.Repeat([]byte("x"), 4096), 0o644); err != nil {
				t.Fatal(err)
			}
			url, err := s.CreateRepo("config", "main", dir)
			if err != nil {
				t.Fatal(err)
			}
			ep, err := transport.NewEndpoint(url)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := githttp.DefaultClient.NewUploadPackSession(ep, &githttp.BasicAuth{Username: s.Username, Password: s.Password})
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			ar, err := sess.AdvertisedReferences()
			if err != nil {
				t.Fatal(err)
			}
			if got := ar.Capabilities.Supports(capability.Filter); got != tt.want {
				t.Fatalf("filter capability advertised: %v, want %v (capabilities %s)", got, tt.want, ar.Capabilities)
			}
			if !tt.want {
				return
			}
			// A real partial clone by the git CLI leaves the 4 KiB blob out.
			work := t.TempDir()
			authURL := strings.Replace(url, "http://", "http://"+s.Username+":"+s.Password+"@", 1)
			for _, args := range [][]string{
				{"clone", "-q", "--no-checkout", "--filter=blob:limit=1k", authURL, work},
				{"-C", work, "rev-list", "--objects", "--missing=print", "HEAD"},
			} {
				out, err := exec.Command("git", args...).CombinedOutput()
				if err != nil {
					t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				if args[0] == "-C" && !bytes.Contains(out, []byte("\n?")) {
					t.Errorf("the partial clone holds every blob:\n%s", out)
				}
			}
		})
	}
}
