package cluster_test

import (
	"testing"

	"github.com/deliverhq/deliver/step/cluster"
)

// TestGetAndMergePatch: Get reads an object in its preferred version, MergePatch changes it,
// and a missing object, a kind the server does not serve and a patch the server rejects each
// get their sentinel.
func TestGetAndMergePatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 1)), cluster.ApplyOptions{DefaultNamespace: e.ns}); err != nil {
		t.Fatal(err)
	}
	cm := cluster.ObjectRef{Kind: "ConfigMap", Namespace: e.ns, Name: "web-config"}
	u, err := e.c.Get(e.ctx, cm)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "greeting", u.Object["data"].(map[string]any)["greeting"], any("hello"))
	u, err = e.c.MergePatch(e.ctx, cm, []byte(`{"metadata":{"annotations":{"deliver.test/at":"now"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "annotation", u.GetAnnotations()["deliver.test/at"], "now")

	_, err = e.c.Get(e.ctx, cluster.ObjectRef{Kind: "ConfigMap", Namespace: e.ns, Name: "nope"})
	wantErr(t, err, cluster.ErrNotFound, "ConfigMap/"+e.ns+"/nope")
	_, err = e.c.MergePatch(e.ctx, cluster.ObjectRef{Kind: "ConfigMap", Namespace: e.ns, Name: "nope"}, []byte(`{}`))
	wantErr(t, err, cluster.ErrNotFound, "ConfigMap/"+e.ns+"/nope")
	_, err = e.c.Get(e.ctx, cluster.ObjectRef{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Nope", Namespace: e.ns, Name: "x"})
	wantErr(t, err, cluster.ErrInvalid, "Nope")
	_, err = e.c.MergePatch(e.ctx, cluster.ObjectRef{Group: "apps", Kind: "Deployment", Namespace: e.ns, Name: "web"}, []byte(`{"spec":{"replicas":-1}}`))
	wantErr(t, err, cluster.ErrInvalid, "Deployment/"+e.ns+"/web")
}
