package kustomize

import (
	"errors"
	"strconv"
)

// ErrNoKustomization means an overlay directory has no kustomization file (or does not
// exist).
var ErrNoKustomization = errors.New("no kustomization file")

// ErrOutsideRoot means a build tried to reach a path outside the repository root, through
// "..", an absolute path or a symlink.
var ErrOutsideRoot = errors.New("path is outside the repository root")

// ErrRemoteResource means a kustomization refers to a remote (git or http) resource, which
// deliver never fetches.
var ErrRemoteResource = errors.New("remote resources are not allowed")

// FileError is an error about one kustomization file, with the 1-based line it concerns
// when that is known (0 otherwise). Path is empty for errors from EditImages, which does
// not know the file name; SetImages and ReadImages fill it in.
type FileError struct {
	Path string
	Line int
	Err  error
}

// Error reads like "overlays/staging/kustomization.yaml:12: images[1]: duplicate image
// name "web"".
func (e *FileError) Error() string {
	msg := "unknown error"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	prefix := e.Path
	switch {
	case e.Line > 0 && prefix != "":
		prefix += ":" + strconv.Itoa(e.Line)
	case e.Line > 0:
		prefix = "line " + strconv.Itoa(e.Line)
	}
	if prefix == "" {
		return msg
	}
	return prefix + ": " + msg
}

// Unwrap returns the underlying error, so errors.Is(err, ErrInvalidImage) and the like
// see through a FileError.
func (e *FileError) Unwrap() error { return e.Err }

// withPath returns err with the file path attached: a *FileError without a path gets
// this one, anything else is wrapped in a new *FileError.
func withPath(path string, err error) error {
	var fe *FileError
	if errors.As(err, &fe) && error(fe) == err && fe.Path == "" {
		return &FileError{Path: path, Line: fe.Line, Err: fe.Err}
	}
	return &FileError{Path: path, Err: err}
}

// FileLine returns the file and line the error is about, for CI annotations.
func (e *FileError) FileLine() (string, int) { return e.Path, e.Line }
