package configrepo

import "github.com/go-git/go-git/v5"

// Git gives the tests read access to the clone's objects; the product reads history through
// Repo.History and never sees go-git types.
func (r *Repo) Git() *git.Repository { return r.repo }
