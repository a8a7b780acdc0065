package registry

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestChoosePlatform: which image of an index the creation time is read from.
func TestChoosePlatform(t *testing.T) {
	t.Parallel()
	img := func(name, platform string) v1.Descriptor {
		d := v1.Descriptor{MediaType: types.OCIManifestSchema1, Annotations: map[string]string{"name": name}}
		if platform != "" {
			p, err := v1.ParsePlatform(platform)
			if err != nil {
				t.Fatal(err)
			}
			d.Platform = p
		}
		return d
	}
	nested := v1.Descriptor{MediaType: types.OCIImageIndex, Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}, Annotations: map[string]string{"name": "nested"}}
	buildx := []v1.Descriptor{img("amd64", "linux/amd64"), img("arm64", "linux/arm64/v8"), img("att-amd64", "unknown/unknown"), img("att-arm64", "unknown/unknown")}
	tests := []struct {
		name          string
		manifests     []v1.Descriptor
		prefer        []string
		want          string // the chosen manifest's name; "" when none
		wantPreferred bool
	}{
		{name: "no preference: the first", manifests: buildx, want: "amd64"},
		{name: "the cluster's platform", manifests: buildx, prefer: []string{"linux/arm64"}, want: "arm64", wantPreferred: true},
		{name: "the cluster's platform with its variant", manifests: buildx, prefer: []string{"linux/arm64/v8"}, want: "arm64", wantPreferred: true},
		{name: "another variant than the index's", manifests: buildx, prefer: []string{"linux/arm64/v7"}, want: "amd64"},
		{name: "the first preference the index holds", manifests: buildx, prefer: []string{"linux/s390x", "linux/arm64", "linux/amd64"}, want: "arm64", wantPreferred: true},
		{name: "none of the cluster's platforms", manifests: buildx, prefer: []string{"windows/amd64"}, want: "amd64"},
		{name: "attestations first", manifests: []v1.Descriptor{img("att", "unknown/unknown"), img("arm64", "linux/arm64")}, want: "arm64"},
		{name: "nested index skipped", manifests: []v1.Descriptor{nested, img("ppc", "linux/ppc64le")}, prefer: []string{"linux/arm64"}, want: "ppc"},
		{name: "images without a platform come last", manifests: []v1.Descriptor{img("plain", ""), img("riscv", "linux/riscv64")}, want: "riscv"},
		{name: "only an image without a platform", manifests: []v1.Descriptor{img("plain", "")}, prefer: []string{"linux/amd64"}, want: "plain"},
		{name: "only attestations", manifests: []v1.Descriptor{img("att", "unknown/unknown")}, want: ""},
		{name: "empty index", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prefer []v1.Platform
			for _, p := range tt.prefer {
				pl, err := v1.ParsePlatform(p)
				if err != nil {
					t.Fatal(err)
				}
				prefer = append(prefer, *pl)
			}
			got, preferred, ok := choosePlatform(tt.manifests, prefer)
			if name := got.Annotations["name"]; name != tt.want || ok != (tt.want != "") || preferred != tt.wantPreferred {
				t.Fatalf("choosePlatform = %q, preferred %v, ok %v; want %q, preferred %v", name, preferred, ok, tt.want, tt.wantPreferred)
			}
		})
	}
}
