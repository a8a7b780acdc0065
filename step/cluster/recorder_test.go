package cluster_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/step/cluster"
)

// apiRequest is one request a Client sent, as a recorder saw it.
type apiRequest struct {
	// verb is get, list, watch, create, patch, update or delete; discovery for requests
	// outside a resource.
	verb                                 string
	resource, namespace, name            string
	labelSelector, fieldSelector, fromRV string
}

func (r apiRequest) String() string {
	s := r.verb + " " + r.resource
	if r.namespace != "" {
		s += " -n " + r.namespace
	}
	if r.name != "" {
		s += " " + r.name
	}
	for _, q := range [][2]string{{"labelSelector", r.labelSelector}, {"fieldSelector", r.fieldSelector}, {"resourceVersion", r.fromRV}} {
		if q[1] != "" {
			s += " " + q[0] + "=" + q[1]
		}
	}
	return s
}

// parseRequest returns what req asks for.
func parseRequest(req *http.Request) apiRequest {
	q := req.URL.Query()
	r := apiRequest{labelSelector: q.Get("labelSelector"), fieldSelector: q.Get("fieldSelector"), fromRV: q.Get("resourceVersion")}
	segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(segs) > 2 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) > 3 && segs[0] == "apis":
		segs = segs[3:]
	default:
		r.verb = "discovery"
		return r
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		r.namespace, segs = segs[1], segs[2:]
	}
	r.resource = segs[0]
	if len(segs) > 1 {
		r.name = segs[1]
	}
	switch req.Method {
	case http.MethodGet:
		switch {
		case q.Get("watch") == "true" || q.Get("watch") == "1":
			r.verb = "watch"
		case r.name == "":
			r.verb = "list"
		default:
			r.verb = "get"
		}
	case http.MethodPost:
		r.verb = "create"
	case http.MethodPatch:
		r.verb = "patch"
	case http.MethodPut:
		r.verb = "update"
	case http.MethodDelete:
		r.verb = "delete"
	default:
		r.verb = strings.ToLower(req.Method)
	}
	return r
}

// recorder records the API requests of a Client made with cluster.WithTransport, and can
// answer some of them itself.
type recorder struct {
	mu   sync.Mutex
	reqs []apiRequest
	// fail, if set, returns the HTTP status (403, 500, 503) to answer r with instead of sending
	// it; 0 sends it.
	fail func(r apiRequest) int
	// cut, if set, says whether to end the stream of watch r as soon as it is open.
	cut func(r apiRequest) bool
}

// client returns a Client like c that sends its requests through rec.
func (rec *recorder) client(t *testing.T, c *cluster.Client) *cluster.Client {
	t.Helper()
	rc, err := cluster.WithTransport(c, rec.wrap)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// wrap is a transport.WrapperFunc.
func (rec *recorder) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r := parseRequest(req)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r)
		fail, cut := rec.fail, rec.cut
		rec.mu.Unlock()
		if fail != nil {
			if code := fail(r); code != 0 {
				return statusResponse(req, code), nil
			}
		}
		resp, err := next.RoundTrip(req)
		if err == nil && r.verb == "watch" && resp.StatusCode == http.StatusOK && cut != nil && cut(r) {
			resp.Body.Close()
			resp.Body = io.NopCloser(strings.NewReader(""))
		}
		return resp, err
	})
}

// take returns the requests recorded since the last take, leaving out discovery.
func (rec *recorder) take() []apiRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var l []apiRequest
	for _, r := range rec.reqs {
		if r.verb != "discovery" {
			l = append(l, r)
		}
	}
	rec.reqs = nil
	return l
}

// count returns how many of reqs have verb and one of resources.
func count(reqs []apiRequest, verb string, resources ...string) int {
	n := 0
	for _, r := range reqs {
		for _, res := range resources {
			if r.verb == verb && r.resource == res {
				n++
				break
			}
		}
	}
	return n
}

// roundTripFunc is an http.RoundTripper calling a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// statusResponse returns an API error response with code, as the API server would send it.
func statusResponse(req *http.Request, code int) *http.Response {
	reason := map[int]string{403: "Forbidden", 500: "InternalError", 503: "ServiceUnavailable"}[code]
	body := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"injected by the test","reason":%q,"code":%d}`, reason, code)
	return &http.Response{
		StatusCode:    code,
		Status:        fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// impersonating returns a Client that acts as user (the admin impersonates it), so that the
// test's RBAC rules for user apply.
func (e *env) impersonating(user string) *cluster.Client {
	e.t.Helper()
	cfg, err := clientcmd.LoadFromFile(e.cl.Kubeconfig)
	if err != nil {
		e.t.Fatal(err)
	}
	kctx := cfg.Contexts[cfg.CurrentContext]
	if kctx == nil || cfg.AuthInfos[kctx.AuthInfo] == nil {
		e.t.Fatalf("kubeconfig %s: no user in its current context", e.cl.Kubeconfig)
	}
	cfg.AuthInfos[kctx.AuthInfo].Impersonate = user
	path := filepath.Join(e.t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		e.t.Fatal(err)
	}
	c, err := cluster.Connect(e.ctx, cluster.Options{Kubeconfig: path})
	if err != nil {
		e.t.Fatalf("Connect as %s: %v", user, err)
	}
	return c
}
