package kustomize

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckBuildFile(t *testing.T) {
	t.Parallel()
	bomb := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	prev := "a"
	for _, l := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		bomb += l + ": &" + l + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+",", 9), ",") + "]\n"
		prev = l
	}
	tests := []struct {
		name    string
		content string
		wantErr bool
	}{
		{"plain manifest", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", false},
		{"small aliases", "x: &x {a: 1}\ny: *x\nz: *x\n", false},
		{"billion laughs", bomb, true},
		{"too large", strings.Repeat("# padding\n", maxBuildFile/10+1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "r.yaml")
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			err := checkBuildFile(p)
			if tt.wantErr != errors.Is(err, ErrTooLarge) {
				t.Fatalf("checkBuildFile = %v, want ErrTooLarge: %v", err, tt.wantErr)
			}
		})
	}
}
