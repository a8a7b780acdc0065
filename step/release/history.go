package release

import "time"

// Entry is a Record with the commit that holds it.
type Entry struct {
	Record
	Commit string    `json:"commit"`
	Time   time.Time `json:"time"`
	Author string    `json:"author"`
}

// FromCommit reads the record of a commit; ok is false for a commit deliver did not make (no
// deliver trailers).
func FromCommit(hash, message, author string, when time.Time) (e Entry, ok bool) {
	rec, err := Parse(message)
	if err != nil {
		return Entry{}, false
	}
	return Entry{Record: rec, Commit: hash, Time: when, Author: author}, true
}

// Previous finds, in an environment's entries (newest first), the release of image before
// current: the newest image deployed or promoted there that is neither current nor one a
// rollback or revert moved away from. "" means there is none.
func Previous(entries []Entry, image, current string) string {
	rolledBack := map[string]bool{}
	for _, e := range entries {
		if e.Action == ActionRollback || e.Action == ActionRevert {
			for _, ch := range e.Images {
				if ch.Name == image && ch.From != "" {
					rolledBack[ch.From] = true
				}
			}
		}
	}
	for _, e := range entries {
		if e.Action != ActionDeploy && e.Action != ActionPromote && e.Action != "" {
			continue
		}
		for _, ch := range e.Images {
			if ch.Name != image || ch.To == current || rolledBack[ch.To] {
				continue
			}
			return ch.To
		}
		// The From of a deploy is a release too (the first deploy's From predates deliver).
		for _, ch := range e.Images {
			if ch.Name == image && ch.From != "" && ch.From != current && !rolledBack[ch.From] {
				return ch.From
			}
		}
	}
	return ""
}
