package reliability_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// sentinels are secret values that must never be shown.
type sentinels struct {
	gitUser, gitToken, wrongToken  string
	regUser, regPassword, wrongReg string
	sshKey                         string
	// signingKey is a real SSH key (it is parsed and signs every commit), encrypted with
	// signingPass.
	signingKey, signingPass string
	kubeToken               string
	urlPassword             string
	// echoToken is a git token with characters URLs escape, for the cases where a server
	// echoes the Authorization header: its percent-encoded forms differ from it.
	echoToken string
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newSentinels(t *testing.T) sentinels {
	signingPass := "SNTLsign" + randomHex(t, 12)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "deliver-bot", []byte(signingPass))
	if err != nil {
		t.Fatal(err)
	}
	return sentinels{
		signingKey:  string(pem.EncodeToMemory(block)),
		signingPass: signingPass,
		gitUser:     "deliver-bot",
		gitToken:    "SNTLgit" + randomHex(t, 12),
		wrongToken:  "SNTLwrong" + randomHex(t, 12),
		regUser:     "ci-pull",
		regPassword: "SNTLreg" + randomHex(t, 12),
		wrongReg:    "SNTLwrongreg" + randomHex(t, 12),
		sshKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nSNTLsshA" + randomHex(t, 16) + "\nSNTLsshB" + randomHex(t, 16) +
			"\n-----END OPENSSH PRIVATE KEY-----\n",
		kubeToken:   "SNTLkube" + randomHex(t, 12),
		urlPassword: "SNTLurl" + randomHex(t, 12),
		echoToken:   "SNTLecho/+=%" + randomHex(t, 12) + "?&:@",
	}
}

// values are the strings that must not appear: every secret, every line of the key, and every
// encoding of a secret a client sends or a URL holds: the base64 (standard and URL-safe, padded
// and not) of user:secret as Basic auth sends it, for the git user, the default x-access-token
// and the registry user, of :secret and secret:, and its percent-encoded forms.
func (s sentinels) values() []string {
	raw := []string{s.gitToken, s.wrongToken, s.regPassword, s.wrongReg, s.kubeToken, s.urlPassword, s.echoToken, s.signingPass}
	v := append([]string(nil), raw...)
	for _, l := range strings.Split(s.sshKey, "\n") {
		if strings.HasPrefix(l, "SNTL") {
			v = append(v, l)
		}
	}
	for _, l := range strings.Split(s.signingKey, "\n") {
		if len(l) >= 16 && !strings.HasPrefix(l, "-----") {
			v = append(v, l)
		}
	}
	for _, secret := range raw {
		pairs := []string{":" + secret, secret + ":"}
		for _, user := range []string{s.gitUser, "x-access-token", s.regUser} {
			pairs = append(pairs, user+":"+secret)
		}
		for _, p := range pairs {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
				v = append(v, enc.EncodeToString([]byte(p)))
			}
		}
		v = append(v, url.QueryEscape(secret), url.PathEscape(secret), url.User(secret).String(), strings.TrimPrefix(url.UserPassword("", secret).String(), ":"))
	}
	return v
}

// check fails the test if text (named where) holds a sentinel. In GitHub mode the
// ::add-mask:: lines on the raw stream are exempt: they must carry the value, and the runner
// hides them.
func (s sentinels) check(t *testing.T, where, text string, github bool) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if github && strings.HasPrefix(line, "::add-mask::") {
			continue
		}
		for _, v := range s.values() {
			if strings.Contains(line, v) {
				t.Errorf("a secret (%s...) is in %s: %q", v[:8], where, line)
			}
		}
	}
}

// kubeconfigData returns the cluster's admin kubeconfig with a bearer token added (the
// client certificate still authenticates), pointed at server if not empty.
func kubeconfigData(t *testing.T, c *testenv.Cluster, token, server string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Token = token
	}
	if server != "" {
		for _, cl := range cfg.Clusters {
			cl.Server = server
		}
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// closedPort returns an address on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestSecretsNeverShown runs every command with sentinel secrets (git token, registry
// password, SSH key, commit signing key and its passphrase, a kubeconfig token in
// --kubeconfig-data) through the plain, GitHub and
// GitLab reporters, on success and on the failure paths (wrong token, registry 401, cluster
// down, hook rejection), passing the secrets as flags, in the config repo URL's user-info
// and as DELIVER_* variables, and checks no sentinel appears in stdout, stderr (but the
// ::add-mask:: lines GitHub hides), the GitHub output and summary files, the GitLab dotenv
// report, or anything in the config repo (messages, authors, files of every commit).
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	cl := cluster(t)
	for _, reporter := range []string{"plain", "github", "gitlab"} {
		t.Run(reporter, func(t *testing.T) {
			t.Parallel()
			sn := newSentinels(t)
			ns := uniqueNS("sec-" + reporter)
			prodNS := uniqueNS("sec-prod-" + reporter)
			a := fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": ns, "production": prodNS, "qa": uniqueNS("sec-qa")}, OverlayImages: fixture.StagingImages}
			s := newServers(t, a, fixture.Options{
				GitOpts: []testenv.GitOption{testenv.WithCredentials(sn.gitUser, sn.gitToken)},
				RegOpts: []testenv.RegistryOption{testenv.WithBasicAuth(sn.regUser, sn.regPassword)},
			})
			for _, tag := range []string{"1.1.0", "1.2.0", "1.3.0"} {
				s.PushImage(t, "team/web", tag)
			}
			good := kubeconfigData(t, cl, sn.kubeToken, "")
			down := kubeconfigData(t, cl, sn.kubeToken, "https://"+closedPort(t))
			setImageDir := t.TempDir()
			// The GitHub runs read the signing key from a file (the others get its content).
			signingFile := filepath.Join(t.TempDir(), "signing-key")
			if err := os.WriteFile(signingFile, []byte(sn.signingKey), 0o600); err != nil {
				t.Fatal(err)
			}
			fixture.WriteFiles(t, setImageDir, map[string]string{"kustomization.yaml": "images:\n  - name: web\n    newTag: \"1\"\n"})

			// creds are the secrets as this reporter's run passes them: plain as flags, github
			// with the token in the URL's user-info, gitlab as DELIVER_* variables.
			// user is the git username ("": deliver's default); repoURL the config repo's URL.
			type creds struct{ token, regPassword, kubeconfig, user, repoURL string }
			ok := creds{sn.gitToken, sn.regPassword, good, sn.gitUser, s.URL}
			// has lists which secret flags each command defines.
			has := func(cmd, what string) bool {
				switch cmd {
				case "deploy", "rollback", "promote":
					return true
				case "apply", "diff":
					return what != "registry"
				case "lock", "unlock", "history":
					return what == "git"
				}
				return false
			}
			command := func(c creds, cmd ...string) ([]string, []string) {
				argv := append([]string(nil), cmd...)
				var env []string
				name := cmd[0]
				switch reporter {
				case "plain":
					if has(name, "git") {
						argv = append(argv, "--config-repo", c.repoURL, "--git-token", c.token, "--ssh-key", sn.sshKey,
							"--signing-key", sn.signingKey, "--signing-key-passphrase", sn.signingPass)
						if c.user != "" {
							argv = append(argv, "--git-username", c.user)
						}
					}
					if has(name, "registry") {
						argv = append(argv, "--registry-username", sn.regUser, "--registry-password", c.regPassword)
					}
					if has(name, "cluster") {
						argv = append(argv, "--kubeconfig-data", c.kubeconfig)
					}
					if name == "set-image" {
						env = append(env, "DELIVER_GIT_TOKEN="+c.token, "DELIVER_REGISTRY_PASSWORD="+c.regPassword, "DELIVER_SSH_KEY="+sn.sshKey, "DELIVER_KUBECONFIG_DATA="+c.kubeconfig)
					}
				case "github":
					if has(name, "git") {
						argv = append(argv, "--config-repo", strings.Replace(c.repoURL, "http://", "http://"+url.UserPassword(c.user, c.token).String()+"@", 1))
					}
					env = append(env, "DELIVER_SSH_KEY="+sn.sshKey, "DELIVER_REGISTRY_USERNAME="+sn.regUser,
						"DELIVER_SIGNING_KEY_FILE="+signingFile, "DELIVER_SIGNING_KEY_PASSPHRASE="+sn.signingPass)
					if has(name, "registry") {
						argv = append(argv, "--registry-password", c.regPassword)
					}
					env = append(env, "DELIVER_KUBECONFIG_DATA="+c.kubeconfig)
				case "gitlab":
					env = append(env, "DELIVER_CONFIG_REPO="+c.repoURL, "DELIVER_GIT_USERNAME="+c.user, "DELIVER_GIT_TOKEN="+c.token,
						"DELIVER_SSH_KEY="+sn.sshKey, "DELIVER_REGISTRY_USERNAME="+sn.regUser, "DELIVER_REGISTRY_PASSWORD="+c.regPassword,
						"DELIVER_SIGNING_KEY="+sn.signingKey, "DELIVER_SIGNING_KEY_PASSPHRASE="+sn.signingPass,
						"DELIVER_KUBECONFIG_DATA="+c.kubeconfig)
				}
				if has(name, "cluster") {
					argv = append(argv, "--timeout", rolloutTimeout.String())
				}
				return argv, env
			}
			var outputs []string // files the reporters wrote, checked at the end too
			runCase := func(t *testing.T, wantCodes []int, c creds, cmd ...string) result {
				t.Helper()
				argv, env := command(c, cmd...)
				dir := t.TempDir()
				switch reporter {
				case "github":
					out, sum := filepath.Join(dir, "output"), filepath.Join(dir, "summary")
					env = append(env, "GITHUB_ACTIONS=true", "GITHUB_OUTPUT="+out, "GITHUB_STEP_SUMMARY="+sum,
						"GITHUB_REPOSITORY=team/web", "GITHUB_SHA=0123abc", "GITHUB_RUN_ID=42", "GITHUB_ACTOR=ada", "GITHUB_EVENT_NAME=workflow_dispatch")
				case "gitlab":
					env = append(env, "GITLAB_CI=true", "CI_PIPELINE_SOURCE=web", "GITLAB_USER_NAME=Ada", "CI_PROJECT_URL=https://gitlab.example.com/team/web")
				}
				r := start(t, opts{env: env, dir: dir, deadline: 2 * time.Minute}, argv...).wait()
				t.Logf("%s: %s", strings.Join(cmd, " "), firstLine(r))
				if !containsInt(wantCodes, r.code) {
					t.Errorf("%s: exit %d, want %v\n%s", strings.Join(cmd, " "), r.code, wantCodes, r)
				}
				sn.check(t, "stdout", r.stdout, false)
				sn.check(t, "stderr", r.stderr, reporter == "github")
				if reporter == "github" {
					for _, v := range []string{c.token, c.regPassword, sn.kubeToken} {
						if has(cmd[0], "git") && v == c.token || has(cmd[0], "registry") && v == c.regPassword || has(cmd[0], "cluster") && v == sn.kubeToken {
							// The runner unescapes a command's data: % is sent as %25.
							if !strings.Contains(r.stderr, "::add-mask::"+strings.ReplaceAll(v, "%", "%25")) {
								t.Errorf("GitHub mode: no ::add-mask:: for the %s... secret the command was given", v[:8])
							}
						}
					}
					// The signing key, line by line, and its passphrase are masked in the job's log.
					if has(cmd[0], "git") {
						for _, v := range append(strings.Split(sn.signingKey, "\n"), sn.signingPass) {
							if len(v) >= 16 && !strings.HasPrefix(v, "-----") && !strings.Contains(r.stderr, "::add-mask::"+v) {
								t.Errorf("GitHub mode: no ::add-mask:: for the signing key's line or passphrase %s...", v[:8])
							}
						}
					}
				}
				// Everything deliver wrote in its working directory: outputs, summary, dotenv.
				entries, _ := os.ReadDir(dir)
				for _, e := range entries {
					b, err := os.ReadFile(filepath.Join(dir, e.Name()))
					if err == nil {
						sn.check(t, e.Name(), string(b), false)
						outputs = append(outputs, string(b))
					}
				}
				checkTempClean(t, r)
				return r
			}
			image := func(tag string) string { return "web=" + s.Reg.Ref("team/web", tag) }

			t.Run("success", func(t *testing.T) {
				any := []int{step.ExitOK}
				runCase(t, any, ok, "deploy", "--env", "staging", "--image", image("1.1.0"))
				runCase(t, any, ok, "deploy", "--env", "staging", "--image", image("1.2.0"))
				runCase(t, any, ok, "rollback", "--env", "staging", "--image", "web")
				runCase(t, any, ok, "promote", "--from", "staging", "--to", "production")
				runCase(t, any, ok, "lock", "--env", "staging", "--image", "web", "--reason", "incident 42")
				runCase(t, any, ok, "unlock", "--env", "staging", "--image", "web")
				runCase(t, any, ok, "apply", "--env", "staging")
				runCase(t, []int{step.ExitOK, step.ExitFailure}, ok, "diff", "--env", "staging")
				r := runCase(t, any, ok, "history", "--env", "staging")
				if !strings.Contains(r.stdout, "rollback") {
					t.Errorf("history does not list the rollback:\n%s", r.stdout)
				}
				runCase(t, any, ok, "set-image", "--dir", setImageDir, "web=reg.example.com/web:2")
			})
			t.Run("wrong token", func(t *testing.T) {
				wrong := ok
				wrong.token = sn.wrongToken
				for _, cmd := range [][]string{
					{"deploy", "--env", "staging", "--image", image("1.2.0")},
					{"rollback", "--env", "staging", "--image", "web", "--tag", "1.1.0"},
					{"promote", "--from", "staging", "--to", "production"},
					{"lock", "--env", "staging", "--image", "web"},
					{"unlock", "--env", "staging", "--image", "web"},
					{"apply", "--env", "staging"},
					{"diff", "--env", "staging"},
					{"history", "--env", "staging"},
				} {
					r := runCase(t, []int{step.ExitAuth}, wrong, cmd...)
					if !strings.Contains(r.stderr, "refused the credentials") {
						t.Errorf("%s: the error does not say the credentials were refused:\n%s", cmd[0], r.stderr)
					}
				}
			})
			t.Run("registry 401", func(t *testing.T) {
				wrong := ok
				wrong.regPassword = sn.wrongReg
				for _, cmd := range [][]string{
					{"deploy", "--env", "staging", "--image", image("1.2.0")},
					{"rollback", "--env", "staging", "--image", "web", "--tag", "1.1.0"},
					{"promote", "--from", "staging", "--to", "production"},
				} {
					r := runCase(t, []int{step.ExitAuth}, wrong, cmd...)
					if !strings.Contains(r.stderr, "registry refused the credentials") {
						t.Errorf("%s: the error does not say the registry refused the credentials:\n%s", cmd[0], r.stderr)
					}
				}
			})
			t.Run("server echoes the Authorization header", func(t *testing.T) {
				// A misconfigured proxy or debug endpoint in front of the git server or the
				// registry answers with the request head, Basic credentials included: the
				// error deliver prints holds them, encoded.
				gitHost := strings.TrimPrefix(s.URL, "http://")
				gitHost = gitHost[:strings.IndexByte(gitHost, '/')]
				gp := faultproxy.New(t, gitHost)
				gp.HTTPStatusBody(http.StatusUnauthorized, faultproxy.EchoHead)
				rp := faultproxy.New(t, s.Reg.Host)
				echo := ok
				echo.token = sn.echoToken
				echo.repoURL = strings.Replace(s.URL, gitHost, gp.Addr, 1)
				defaultUser := echo
				defaultUser.user = ""
				viaProxy := "web=" + rp.Addr + "/team/web:1.3.0"
				for _, tc := range []struct {
					name string
					c    creds
					cmd  []string
					// regMatch, when set, makes the registry proxy answer with regStatus and the
					// request head from the first request holding it on (the registry's
					// challenge and anything before pass).
					regMatch  string
					regStatus int
					wantCode  int
					// echoed: the echo is in deliver's error (masked); else deliver does not
					// print the body (a 401 from the registry, a HEAD).
					echoed bool
				}{
					{name: "git, named user", c: echo, cmd: []string{"deploy", "--env", "staging", "--image", image("1.2.0")}, wantCode: step.ExitAuth, echoed: true},
					{name: "git, default user", c: defaultUser, cmd: []string{"deploy", "--env", "staging", "--image", image("1.2.0")}, wantCode: step.ExitAuth, echoed: true},
					{name: "git, lock", c: echo, cmd: []string{"lock", "--env", "staging", "--image", "web"}, wantCode: step.ExitAuth, echoed: true},
					{name: "git, history", c: defaultUser, cmd: []string{"history", "--env", "staging"}, wantCode: step.ExitAuth, echoed: true},
					{name: "registry 401 to the image check", c: ok, cmd: []string{"deploy", "--env", "staging", "--image", viaProxy},
						regMatch: "Authorization: Basic ", regStatus: http.StatusUnauthorized, wantCode: step.ExitAuth},
					// The downgrade guard of an automated deploy reads the image's config
					// (GET), after the image check (HEAD) passed.
					{name: "registry 400 to the downgrade guard", c: ok, cmd: []string{"deploy", "--env", "staging", "--image", viaProxy, "--trigger", "automated", "--no-apply"},
						regMatch: "GET /v2/team/web/manifests/", regStatus: http.StatusBadRequest, wantCode: step.ExitRegistry, echoed: true},
				} {
					rp.Pass()
					if tc.regMatch != "" {
						status := tc.regStatus
						rp.OnMatch(faultproxy.Request, []byte(tc.regMatch), func() { rp.HTTPStatusBody(status, faultproxy.EchoHead) })
					}
					head := s.Head(t)
					r := runCase(t, []int{tc.wantCode}, tc.c, tc.cmd...)
					if tc.regMatch != "" && !rp.Matched() {
						t.Errorf("%s: the registry never got the request to echo: the case proves nothing", tc.name)
					}
					if tc.echoed && !strings.Contains(r.stderr, "Authorization: Basic") {
						t.Errorf("%s: the echoed request head is not in the output: the case proves nothing\n%s", tc.name, r.stderr)
					}
					if s.Head(t) != head {
						t.Errorf("%s: the config repo moved", tc.name)
					}
				}
			})
			t.Run("cluster down", func(t *testing.T) {
				off := ok
				off.kubeconfig = down
				head := s.Head(t)
				for _, cmd := range [][]string{
					{"deploy", "--env", "staging", "--image", image("1.2.0")},
					{"rollback", "--env", "staging", "--image", "web", "--tag", "1.2.0"},
					{"promote", "--from", "staging", "--to", "production"},
					{"apply", "--env", "staging"},
					{"diff", "--env", "staging"},
				} {
					r := runCase(t, []int{step.ExitApply}, off, cmd...)
					if !strings.Contains(r.stderr, "cluster unreachable") {
						t.Errorf("%s: the error does not say the cluster is unreachable:\n%s", cmd[0], r.stderr)
					}
				}
				// The cluster is checked before the push: nothing was pushed.
				if got := s.Head(t); got != head {
					t.Errorf("the config repo moved to %s although the cluster was down", got)
				}
			})
			t.Run("hook rejection", func(t *testing.T) {
				if err := s.Git.SetHook(s.Name, "pre-receive", "#!/bin/sh\necho 'protected branch: use a merge request' >&2\nexit 1\n"); err != nil {
					t.Fatal(err)
				}
				defer s.Git.SetHook(s.Name, "pre-receive", "#!/bin/sh\nexit 0\n")
				for _, cmd := range [][]string{
					// Each would change the repo (staging is at 1.1.0 since the rollback, qa at 0.9.0).
					{"deploy", "--env", "staging", "--image", image("1.3.0"), "--no-apply"},
					{"rollback", "--env", "staging", "--image", "web", "--tag", "1.2.0", "--no-apply"},
					{"promote", "--from", "staging", "--to", "qa", "--no-apply"},
					{"lock", "--env", "staging", "--image", "web"},
				} {
					r := runCase(t, []int{step.ExitPush}, ok, cmd...)
					if !strings.Contains(r.stderr, "protected branch: use a merge request") {
						t.Errorf("%s: the error does not pass on the hook's message:\n%s", cmd[0], r.stderr)
					}
				}
			})

			t.Run("ssh URL with a password", func(t *testing.T) {
				if reporter == "github" {
				}
				// A password in an ssh:// URL means nothing to key authentication, but it is a
				// credential in a URL: every message must redact it. The server is not there.
				key, hostKey := sshKeys(t)
				url := "ssh://git:" + sn.urlPassword + "@" + closedPort(t) + "/config.git"
				for _, cmd := range [][]string{{"lock", "--env", "staging", "--image", "web"}, {"history", "--env", "staging"}} {
					argv := append(cmd, "--config-repo", url, "--ssh-key", key, "--ssh-host-key", hostKey)
					dir := t.TempDir()
					var env []string
					switch reporter {
					case "github":
						env = []string{"GITHUB_ACTIONS=true", "GITHUB_OUTPUT=" + filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY=" + filepath.Join(dir, "summary")}
					case "gitlab":
						env = []string{"GITLAB_CI=true"}
					}
					r := start(t, opts{env: env, dir: dir}, argv...).wait()
					t.Logf("%s: %s", cmd[0], firstLine(r))
					if r.code != step.ExitPush || !strings.Contains(r.stderr, "config repo unreachable") {
						t.Errorf("%s over ssh to a closed port: exit %d, want %d\n%s", cmd[0], r.code, step.ExitPush, r)
					}
					sn.check(t, "stdout", r.stdout, false)
					sn.check(t, "stderr", r.stderr, reporter == "github")
					for _, line := range strings.Split(r.stdout+"\n"+r.stderr, "\n") {
						for _, l := range strings.Split(key, "\n") {
							if len(l) > 16 && !strings.HasPrefix(l, "-----") && !strings.HasPrefix(line, "::add-mask::") && strings.Contains(line, l) {
								t.Errorf("a line of the SSH key is in the output: %q", line)
							}
						}
					}
					entries, _ := os.ReadDir(dir)
					for _, e := range entries {
						b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
						sn.check(t, e.Name(), string(b), false)
					}
				}
			})

			// Nothing in the config repo: every commit's message, author and files.
			log := exec.Command("git", "--git-dir="+s.Git.BareDir(s.Name), "log", "--all", "-p", "--format=fuller", "--no-color")
			out, err := log.CombinedOutput()
			if err != nil {
				t.Fatalf("git log: %v\n%s", err, out)
			}
			sn.check(t, "the config repo", string(out), false)
			if !strings.Contains(string(out), "Deliver-Action: rollback") {
				t.Errorf("the config repo's history lacks the rollback; did the runs happen?")
			}
			tip, err := exec.Command("git", "--git-dir="+s.Git.BareDir(s.Name), "cat-file", "commit", "main").CombinedOutput()
			if err != nil || !strings.Contains(string(tip), "gpgsig -----BEGIN SSH SIGNATURE-----") {
				t.Errorf("the tip is not signed: the signing key was not used (%v)\n%s", err, tip)
			}
		})
	}
}

// sshKeys returns a new ed25519 private key (OpenSSH PEM) and another key's public key in
// authorized_keys form, to pin as the server's host key.
func sshKeys(t *testing.T) (private, hostKey string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}
