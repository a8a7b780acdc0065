package engine_test

import (
	"testing"

	"github.com/deliverhq/deliver/step/engine"
)

func TestSameImage(t *testing.T) {
	const d = "@sha256:a54162affd77d696a23549be3c87b825edbe194b26dc30389de84d1015cebe91"
	tests := []struct {
		a, b string
		want bool
	}{
		{"registry.example/team/web:1.4.3" + d, "registry.example/team/web:1.4.3" + d, true},
		{"registry.example/team/web" + d, "registry.example/team/web:1.4.3" + d, true},
		{"127.0.0.1:5000/team/web:2" + d, "127.0.0.1:5000/team/web" + d, true},
		{"registry.example/team/web:1.4.3", "registry.example/team/web:1.4.3", true},
		{"registry.example/team/web:1.4.3", "registry.example/team/web:1.4.4", false},
		{"registry.example/team/api" + d, "registry.example/team/web" + d, false},
		{"registry.example/team/web:1", "registry.example/team/web" + d, false},
		{"127.0.0.1:5000/web", "127.0.0.1:5001/web", false},
	}
	for _, tt := range tests {
		if got := engine.SameImage(tt.a, tt.b); got != tt.want {
			t.Errorf("SameImage(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
