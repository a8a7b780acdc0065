// secrets.go owns registering every secret flag's value for redaction, once per run.

package step

import (
	"net/url"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/cluster"
)

// registerSecrets collects every secret a command was given — tokens, passwords, keys,
// kubeconfig credentials, credentials in URLs — into the run's redactor, before the command
// prints anything, with the usernames sent along with them in Basic auth (so that a server
// echoing the Authorization header is masked too).
func (r *runner) registerSecrets(c *cli.Context) {
	// The git username given (in the flag or the URL) or defaulted, and the registry's.
	r.redactor.AddUsers(stringFlag(c, flagGitUsername), defaultGitUsername, stringFlag(c, flagRegUser),
		r.getenv("CI_REGISTRY_USER"), r.getenv("GITHUB_ACTOR"))
	for _, name := range []string{flagGitToken, flagSSHKey, flagRegPassword, flagSigningKey, flagSigningPass} {
		if isSet(c, name) {
			r.redactor.Add(c.String(name))
		}
	}
	for _, name := range []string{flagSSHKeyFile, flagSigningFile} {
		if isSet(c, name) {
			if key, err := os.ReadFile(r.path(c.String(name))); err == nil {
				r.redactor.Add(string(key))
			}
		}
	}
	if isSet(c, flagConfigRepo) {
		if u, err := url.Parse(c.String(flagConfigRepo)); err == nil && u.User != nil {
			r.redactor.AddUsers(u.User.Username())
			if p, ok := u.User.Password(); ok {
				r.redactor.Add(p)
			}
		}
	}
	r.redactor.Add(r.getenv("CI_REGISTRY_PASSWORD"), r.getenv("GITHUB_TOKEN"), r.getenv("CI_JOB_TOKEN"))
	// Kubeconfig credentials, from the kubeconfig deliver would connect with (the content, the
	// file, every file of $KUBECONFIG, ~/.kube/config, the in-cluster token), and the files it
	// names. Only the credentials: masking every line of a kubeconfig would star server names
	// and namespaces in every later log line (GitHub keeps ::add-mask:: values for the whole
	// job).
	r.redactor.Add(cluster.Credentials(r.clusterOptions(c))...)
}

// defaultGitUsername is the username configrepo sends with a token when none is given.
const defaultGitUsername = "x-access-token"

func isSet(c *cli.Context, name string) bool {
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			if n == name {
				return c.String(name) != ""
			}
		}
	}
	return false
}

func stringFlag(c *cli.Context, name string) string {
	if isSet(c, name) {
		return c.String(name)
	}
	return ""
}
