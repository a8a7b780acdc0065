package configrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// remote speaks the git protocol with the config repository's server through go-git's
// transport plumbing, so that Repo chooses what is fetched (depth, partial-clone filter) and
// what is pushed (exactly the objects a commit made), and so that the HTTP client is this
// Repo's own (TLS settings, error bodies cut short) rather than a process-wide one.
type remote struct {
	url    string // without credentials, for messages
	ep     *transport.Endpoint
	tr     transport.Transport
	auth   transport.AuthMethod
	branch plumbing.ReferenceName
}

func newRemote(cleanURL, branch string, a Auth, auth transport.AuthMethod) (*remote, error) {
	ep, err := transport.NewEndpoint(cleanURL)
	if err != nil {
		return nil, fmt.Errorf("config repo URL: %w", redactURLError(err))
	}
	var tr transport.Transport
	switch ep.Protocol {
	case "http", "https":
		hc, err := newHTTPClient(a)
		if err != nil {
			return nil, err
		}
		tr = githttp.NewClient(hc)
	case "ssh":
		tr = gitssh.DefaultClient
	default:
		if tr, err = client.NewClient(ep); err != nil {
			return nil, fmt.Errorf("config repo URL: %w", err)
		}
	}
	return &remote{url: cleanURL, ep: ep, tr: tr, auth: auth, branch: plumbing.NewBranchReferenceName(branch)}, nil
}

// errBranchMissing: the server does not have the branch.
var errBranchMissing = errors.New("couldn't find remote ref")

// tip asks the server where the branch points (git ls-remote), without fetching anything.
func (r *remote) tip(ctx context.Context) (plumbing.Hash, error) {
	ar, err := r.advertised(ctx)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return r.branchIn(ar)
}

// advertised lists the server's refs (git ls-remote), without fetching anything.
func (r *remote) advertised(ctx context.Context) (*packp.AdvRefs, error) {
	s, err := r.tr.NewUploadPackSession(r.ep, r.auth)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.AdvertisedReferencesContext(ctx)
}

func (r *remote) branchIn(ar *packp.AdvRefs) (plumbing.Hash, error) {
	h, ok := ar.References[r.branch.String()]
	if !ok {
		return plumbing.ZeroHash, fmt.Errorf("%w %s", errBranchMissing, r.branch)
	}
	return h, nil
}

// fetchRequest says what fetch asks for.
type fetchRequest struct {
	// depth is the number of commits wanted from the tip.
	depth int
	// haves are commits the server can assume the client has (the last tip fetched).
	haves []plumbing.Hash
	// filter is the partial-clone filter asked for when the server supports filters.
	filter packp.Filter
	// always fetches even when the tip is already here (to deepen).
	always bool
	// wants chooses what to fetch from the server's refs (the queue's commits, a change's
	// outcome); nil fetches the branch's tip.
	wants func(refs map[string]plumbing.Hash, tip plumbing.Hash) []plumbing.Hash
}

// fetchResult is what fetch got.
type fetchResult struct {
	tip plumbing.Hash
	// filtered: the server applied the filter (it advertises the "filter" capability).
	filtered bool
	// dropped are the blobs the client left out (the server does not filter), with their
	// sizes.
	dropped map[plumbing.Hash]int64
	// refs are the server's refs as it advertised them for this fetch.
	refs map[string]plumbing.Hash
}

// fetch fetches the branch's tip (and req.depth-1 ancestors) into st and records the shallow
// boundary the server reports. Objects land in a pack on disk.
//
// The pack is written by go-git's pack writer, which while indexing holds each object it
// resolves in memory: an object larger than the filter's limit must therefore never reach it.
// With a server that supports filters it does not (the server leaves it out); with one that
// does not, the pack passes through dropLargeBlobs first, which leaves out what the filter
// would have.
func (r *remote) fetch(ctx context.Context, st *filesystem.Storage, req fetchRequest, limit int64, spool string) (fetchResult, error) {
	s, err := r.tr.NewUploadPackSession(r.ep, r.auth)
	if err != nil {
		return fetchResult{}, err
	}
	defer s.Close()
	ar, err := s.AdvertisedReferencesContext(ctx)
	if err != nil {
		return fetchResult{}, err
	}
	tip, err := r.branchIn(ar)
	if err != nil {
		return fetchResult{}, err
	}
	res := fetchResult{tip: tip, filtered: req.filter != "" && ar.Capabilities.Supports(capability.Filter), refs: ar.References}
	wants := []plumbing.Hash{tip}
	if req.wants != nil {
		wants = req.wants(ar.References, tip)
	}
	var missing []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	for _, h := range wants {
		if !seen[h] && (req.always || st.HasEncodedObject(h) != nil) {
			missing = append(missing, h)
		}
		seen[h] = true
	}
	if len(missing) == 0 {
		return res, nil
	}
	up := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	up.Wants = missing
	if req.depth > 0 {
		up.Depth = packp.DepthCommits(req.depth)
		if err := up.Capabilities.Set(capability.Shallow); err != nil {
			return res, err
		}
		if up.Shallows, err = st.Shallow(); err != nil {
			return res, fmt.Errorf("reading the shallow commits of the clone: %w", err)
		}
	}
	if res.filtered {
		up.Filter = req.filter
		if err := up.Capabilities.Set(capability.Filter); err != nil {
			return res, err
		}
	}
	if ar.Capabilities.Supports(capability.NoProgress) {
		if err := up.Capabilities.Set(capability.NoProgress); err != nil {
			return res, err
		}
	}
	for _, h := range req.haves {
		if !seen[h] && st.HasEncodedObject(h) == nil {
			up.Haves = append(up.Haves, h)
		}
	}
	resp, err := s.UploadPack(ctx, up)
	if errors.Is(err, transport.ErrEmptyUploadPackRequest) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer resp.Close()
	if err := updateShallow(st, resp.ShallowUpdate); err != nil {
		return res, err
	}
	var pack io.Reader = resp
	switch {
	case up.Capabilities.Supports(capability.Sideband64k):
		pack = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case up.Capabilities.Supports(capability.Sideband):
		pack = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	if !res.filtered && limit > 0 {
		res.dropped, err = dropLargeBlobs(pack, st, limit, spool)
		return res, err
	}
	if err := packfile.UpdateObjectStorage(st, pack); err != nil && !errors.Is(err, packfile.ErrEmptyPackfile) {
		return res, err
	}
	return res, nil
}

// updateShallow records the server's new shallow boundary: commits it made shallow are added,
// those it unshallowed (their parents came too) removed.
func updateShallow(st *filesystem.Storage, u packp.ShallowUpdate) error {
	if len(u.Shallows) == 0 && len(u.Unshallows) == 0 {
		return nil
	}
	old, err := st.Shallow()
	if err != nil {
		return fmt.Errorf("reading the shallow commits of the clone: %w", err)
	}
	gone := map[plumbing.Hash]bool{}
	for _, h := range u.Unshallows {
		gone[h] = true
	}
	seen := map[plumbing.Hash]bool{}
	var out []plumbing.Hash
	for _, h := range append(old, u.Shallows...) {
		if !gone[h] && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	if err := st.SetShallow(out); err != nil {
		return fmt.Errorf("writing the shallow commits of the clone: %w", err)
	}
	return nil
}

// errTipMoved: the branch is no longer at the commit the push was made on (another push
// landed first); nothing was sent.
var errTipMoved = errors.New("the branch moved on the server")

// maxServerMessages bounds what is kept of the server's messages during a push (hook output).
const maxServerMessages = 8 << 10

// receiveSession is an open receive-pack session: the server's refs are read, and one request
// of ref updates may be sent.
type receiveSession struct {
	s  transport.ReceivePackSession
	ar *packp.AdvRefs
}

// openReceive starts a push: it opens a receive-pack session and reads the server's refs.
func (r *remote) openReceive(ctx context.Context) (*receiveSession, error) {
	s, err := r.tr.NewReceivePackSession(r.ep, r.auth)
	if err != nil {
		return nil, err
	}
	ar, err := s.AdvertisedReferencesContext(ctx)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return &receiveSession{s: s, ar: ar}, nil
}

func (rs *receiveSession) Close() { _ = rs.s.Close() }

// refs are the server's refs as it advertised them when the session opened.
func (rs *receiveSession) refs() map[string]plumbing.Hash { return rs.ar.References }

// supportsAtomic reports whether the server takes several ref updates as one transaction
// (git push --atomic) and deletions of refs.
func (rs *receiveSession) supportsAtomic() bool {
	return rs.ar.Capabilities.Supports(capability.Atomic) && rs.ar.Capabilities.Supports(capability.DeleteRefs)
}

// send sends one request of ref updates with the objects they need (nothing else: the server
// has every object they build on), atomically (all or none) when atomic is set, with options as
// push options when the server takes them. Every command
// is a compare-and-swap on the server: it applies only while the ref is at the command's old
// value. progress receives the server's messages (hook output). The error of a refused
// request names the refused refs.
func (rs *receiveSession) send(ctx context.Context, st *filesystem.Storage, cmds []*packp.Command, objects []plumbing.Hash, atomic bool, options map[string]string, progress io.Writer) error {
	req := packp.NewReferenceUpdateRequestFromCapabilities(rs.ar.Capabilities)
	req.Progress = progress
	switch {
	case rs.ar.Capabilities.Supports(capability.Sideband64k):
		_ = req.Capabilities.Set(capability.Sideband64k)
	case rs.ar.Capabilities.Supports(capability.Sideband):
		_ = req.Capabilities.Set(capability.Sideband)
	}
	if len(options) > 0 && rs.ar.Capabilities.Supports(capability.PushOptions) {
		_ = req.Capabilities.Set(capability.PushOptions)
		for _, k := range slices.Sorted(maps.Keys(options)) {
			req.Options = append(req.Options, &packp.Option{Key: k, Value: options[k]})
		}
	}
	if atomic {
		if err := req.Capabilities.Set(capability.Atomic); err != nil {
			return err
		}
	}
	req.Commands = cmds
	deletesOnly := true
	for _, c := range cmds {
		if c.Action() != packp.Delete {
			deletesOnly = false
		}
	}
	if !deletesOnly {
		// A request that creates or moves a ref carries a pack, empty if the server has every
		// object already; one that only deletes carries none.
		var pack bytes.Buffer
		enc := packfile.NewEncoder(&pack, st, !rs.ar.Capabilities.Supports(capability.OFSDelta))
		if _, err := enc.Encode(objects, 0); err != nil {
			return fmt.Errorf("packing the commits: %w", err)
		}
		req.Packfile = io.NopCloser(&pack)
	}
	report, err := rs.s.ReceivePack(ctx, req)
	if err != nil {
		return err
	}
	if report == nil {
		return nil
	}
	if report.UnpackStatus != "ok" {
		return fmt.Errorf("unpack error: %s", report.UnpackStatus)
	}
	var refused []string
	for _, cs := range report.CommandStatuses {
		if cs.Status != "ok" {
			refused = append(refused, fmt.Sprintf("%s (%s)", cs.ReferenceName, cs.Status))
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("the server refused %s", strings.Join(refused, ", "))
	}
	return nil
}

// pushIn is push in a session already open.
func (r *remote) pushIn(ctx context.Context, rs *receiveSession, st *filesystem.Storage, old, commit plumbing.Hash, objects []plumbing.Hash, progress io.Writer) error {
	switch now := rs.refs()[r.branch.String()]; now {
	case commit:
		return nil // already there (an earlier answer was lost)
	case old:
	default:
		return fmt.Errorf("%w: it is at %s, the commit was made on %s", errTipMoved, now, old)
	}
	return rs.send(ctx, st, []*packp.Command{{Name: r.branch, Old: old, New: commit}}, objects, false, nil, progress)
}

// sendPack sends one ref update with objects (and options as push options when the server takes
// them) over the receive-pack session s whose advertisement is ar.
func sendPack(ctx context.Context, s transport.ReceivePackSession, ar *packp.AdvRefs, st *filesystem.Storage, cmd *packp.Command,
	objects []plumbing.Hash, options map[string]string, progress io.Writer) error {
	return (&receiveSession{s: s, ar: ar}).send(ctx, st, []*packp.Command{cmd}, objects, false, options, progress)
}

// cappedWriter keeps the first max bytes written to it and drops the rest.
type cappedWriter struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (w *cappedWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room < len(p) {
		w.cut = true
		if room > 0 {
			w.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return w.buf.Write(p)
}

func (w *cappedWriter) String() string {
	if w.cut {
		return w.buf.String() + fmt.Sprintf("\n… (cut at %d bytes)", w.max)
	}
	return w.buf.String()
}

// ValidateBranch refuses a name git refuses as a branch name (git check-ref-format --branch:
// "..", spaces, control characters, ~ ^ : ? * [ \, "@{", a part starting with "." or ending
// in ".lock", ...), and one starting with "-", which git would read as an option.
func ValidateBranch(name string) error {
	if err := plumbing.NewBranchReferenceName(name).Validate(); err != nil {
		return fmt.Errorf("not a valid git branch name %q: %w", name, err)
	}
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("not a valid git branch name %q: it starts with \"-\"", name)
	}
	return nil
}
