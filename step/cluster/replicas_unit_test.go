package cluster

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestPlanReplicas(t *testing.T) {
	owns := func(manager string, op metav1.ManagedFieldsOperationType, sub string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, Subresource: sub, FieldsType: "FieldsV1",
			FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:replicas":{},"f:template":{}}}`)}
	}
	other := metav1.ManagedFieldsEntry{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:template":{}}}`)}
	ours := owns("deliver", metav1.ManagedFieldsOperationApply, "")
	handed := owns("deliver-handover", metav1.ManagedFieldsOperationApply, "")
	hpaScale := owns("kube-controller-manager", metav1.ManagedFieldsOperationUpdate, "scale")
	deliverUpdate := owns("deliver", metav1.ManagedFieldsOperationUpdate, "") // not the applier: another manager
	const hpa = "HorizontalPodAutoscaler/demo/web"

	// want: what is sent ("-" without replicas), the handover first ("" for none), release, left.
	for _, c := range []struct {
		name       string
		kind       string
		autoscaler string
		given      int64 // 0: the object sets no replicas
		live       int64 // 0: no live object
		owners     []metav1.ManagedFieldsEntry
		force      bool
		dry        bool
		send       string
		first      string
		release    bool
		left       string
	}{
		{name: "new workload with an HPA", kind: "Deployment", autoscaler: hpa, given: 2, send: "2"},
		{name: "no replicas given", kind: "Deployment", autoscaler: hpa, live: 3, owners: []metav1.ManagedFieldsEntry{hpaScale}, send: "-"},
		{name: "not a workload", kind: "ConfigMap", autoscaler: hpa, given: 2, live: 3, owners: []metav1.ManagedFieldsEntry{hpaScale}, send: "2"},
		{name: "HPA scaled it", kind: "Deployment", autoscaler: hpa, given: 2, live: 3, owners: []metav1.ManagedFieldsEntry{other, hpaScale}, send: "-", left: hpa + " 3/2"},
		{name: "HPA scaled it, forced", kind: "StatefulSet", autoscaler: hpa, given: 2, live: 3, owners: []metav1.ManagedFieldsEntry{hpaScale}, force: true, send: "-", left: hpa + " 3/2"},
		{name: "HPA arrived, deliver owns", kind: "Deployment", autoscaler: hpa, given: 2, live: 2, owners: []metav1.ManagedFieldsEntry{ours, other}, send: "-", first: "2", left: hpa + " 2/2"},
		{name: "HPA arrived, overlay changed", kind: "ReplicaSet", autoscaler: hpa, given: 4, live: 2, owners: []metav1.ManagedFieldsEntry{ours}, send: "-", first: "2", left: hpa + " 2/4"},
		{name: "HPA arrived, dry run", kind: "Deployment", autoscaler: hpa, given: 4, live: 2, owners: []metav1.ManagedFieldsEntry{ours}, dry: true, send: "2", left: hpa + " 2/4"},
		{name: "already handed over", kind: "Deployment", autoscaler: hpa, given: 4, live: 2, owners: []metav1.ManagedFieldsEntry{handed}, send: "-", left: hpa + " 2/4"},
		{name: "HPA gone before it scaled", kind: "Deployment", given: 4, live: 2, owners: []metav1.ManagedFieldsEntry{handed}, send: "4", first: "4", release: true},
		{name: "HPA gone, dry run", kind: "Deployment", given: 4, live: 2, owners: []metav1.ManagedFieldsEntry{handed}, dry: true, send: "2"},
		{name: "HPA gone, forced dry run", kind: "Deployment", given: 4, live: 2, owners: []metav1.ManagedFieldsEntry{handed}, dry: true, force: true, send: "4"},
		{name: "HPA gone, shared with kubectl", kind: "Deployment", given: 4, live: 2, owners: []metav1.ManagedFieldsEntry{handed, owns("kubectl", metav1.ManagedFieldsOperationApply, "")}, send: "4"},
		{name: "scaled by hand", kind: "Deployment", given: 2, live: 5, owners: []metav1.ManagedFieldsEntry{hpaScale}, send: "2"},
		{name: "scaled by hand, forced", kind: "Deployment", given: 2, live: 5, owners: []metav1.ManagedFieldsEntry{hpaScale}, force: true, send: "-",
			left: `field manager "kube-controller-manager" (through the scale subresource) 5/2`},
		{name: "deliver's Update is another manager", kind: "Deployment", given: 2, live: 5, owners: []metav1.ManagedFieldsEntry{deliverUpdate}, force: true, send: "-",
			left: `field manager "deliver" 5/2`},
		{name: "scaled by hand to the given count", kind: "Deployment", given: 2, live: 2, owners: []metav1.ManagedFieldsEntry{hpaScale}, force: true, send: "2"},
		{name: "shared, overlay changed, forced", kind: "Deployment", given: 3, live: 2, owners: []metav1.ManagedFieldsEntry{ours, hpaScale}, force: true, send: "3"},
		{name: "ours alone", kind: "Deployment", given: 3, live: 2, owners: []metav1.ManagedFieldsEntry{ours}, force: true, send: "3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			group := "apps"
			if c.kind == "ConfigMap" {
				group = ""
			}
			obj := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
			obj.SetAPIVersion(group + "/v1")
			obj.SetKind(c.kind)
			obj.SetName("web")
			if c.given != 0 {
				obj.Object["spec"] = map[string]any{"replicas": c.given}
			}
			m := &member{obj: obj, ref: ObjectRef{Group: group, Version: "v1", Kind: c.kind, Namespace: "demo", Name: "web"}, autoscaler: c.autoscaler}
			var live *unstructured.Unstructured
			if c.live != 0 {
				live = obj.DeepCopy()
				live.Object["spec"] = map[string]any{"replicas": c.live}
				live.SetManagedFields(c.owners)
			}
			p := planReplicas(m, live, ApplyOptions{FieldManager: "deliver", AutoscaledReplicas: true, KeepForeignReplicas: true, ForceConflicts: c.force, DryRun: c.dry})
			send := "-"
			if n, ok, _ := unstructured.NestedInt64(p.send.Object, "spec", "replicas"); ok {
				send = fmt.Sprint(n)
			}
			first := ""
			if p.first != nil {
				first = fmt.Sprint(*p.first)
			}
			left := ""
			if p.left != nil {
				left = fmt.Sprintf("%s %d/%d", p.left.By, p.left.Live, p.left.Given)
				if p.left.Autoscaled != (c.autoscaler != "") {
					t.Errorf("Autoscaled = %v", p.left.Autoscaled)
				}
			}
			if send != c.send || first != c.first || p.release != c.release || left != c.left {
				t.Errorf("sends replicas %s, hands over %q, releases %v, leaves %q; want %s, %q, %v, %q", send, first, p.release, left, c.send, c.first, c.release, c.left)
			}
			if given, ok, _ := unstructured.NestedInt64(obj.Object, "spec", "replicas"); c.given != 0 && (!ok || given != c.given) {
				t.Errorf("planReplicas changed the member's object: replicas %d", given)
			}
		})
	}
}
