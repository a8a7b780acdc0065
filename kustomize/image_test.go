package kustomize

import (
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
)

const (
	digestA = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	digestB = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	digest5 = "sha512:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func TestParseImageArg(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg  string
		want types.Image
	}{
		{"web=reg.example.com/web:1.2@" + digestA, types.Image{Name: "web", NewName: "reg.example.com/web", NewTag: "1.2", Digest: digestA}},
		{"web=reg.example.com/web:1.2", types.Image{Name: "web", NewName: "reg.example.com/web", NewTag: "1.2"}},
		{"web=reg.example.com/web@" + digestA, types.Image{Name: "web", NewName: "reg.example.com/web", Digest: digestA}},
		{"web=reg.example.com/web", types.Image{Name: "web", NewName: "reg.example.com/web"}},
		{"web:1.2", types.Image{Name: "web", NewTag: "1.2"}},
		{"web:1.2@" + digestA, types.Image{Name: "web", NewTag: "1.2", Digest: digestA}},
		{"web@" + digestA, types.Image{Name: "web", Digest: digestA}},
		{"web@" + digest5, types.Image{Name: "web", Digest: digest5}},
		{"web=*:1.2", types.Image{Name: "web", NewName: "*", NewTag: "1.2"}},
		{"web=reg/web:*", types.Image{Name: "web", NewName: "reg/web", NewTag: "*"}},
		{"web=*:*@*", types.Image{Name: "web", NewName: "*", NewTag: "*", Digest: "*"}},
		{"web=*", types.Image{Name: "web", NewName: "*"}},
		{"web:*", types.Image{Name: "web", NewTag: "*"}},
		{"web=localhost:5000/team/web:1.2", types.Image{Name: "web", NewName: "localhost:5000/team/web", NewTag: "1.2"}},
		{"web=localhost:5000/team/web", types.Image{Name: "web", NewName: "localhost:5000/team/web"}},
		{"localhost:5000/team/web:1.2", types.Image{Name: "localhost:5000/team/web", NewTag: "1.2"}},
		{"localhost:5000/team/web@" + digestA, types.Image{Name: "localhost:5000/team/web", Digest: digestA}},
		{"10.0.0.1:5000/web:v_1.0-rc.1", types.Image{Name: "10.0.0.1:5000/web", NewTag: "v_1.0-rc.1"}},
		{"ghcr.io/org/sub/web=ghcr.io/org/sub/web2:_x", types.Image{Name: "ghcr.io/org/sub/web", NewName: "ghcr.io/org/sub/web2", NewTag: "_x"}},
		{"my_app__x-y.z:T", types.Image{Name: "my_app__x-y.z", NewTag: "T"}},
		{"web:" + strings.Repeat("a", 128), types.Image{Name: "web", NewTag: strings.Repeat("a", 128)}},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			t.Parallel()
			got, err := ParseImageArg(tt.arg)
			if err != nil {
				t.Fatalf("ParseImageArg(%q): %v", tt.arg, err)
			}
			if got != tt.want {
				t.Fatalf("ParseImageArg(%q) = %+v, want %+v", tt.arg, got, tt.want)
			}
		})
	}
}

func TestParseImageArgErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg     string
		wantMsg string // substring of the error
	}{
		{"", "empty argument"},
		{"web", "no tag or digest"},
		{"=reg/web:1", `missing image name before "="`},
		{"web=", `missing new image after "="`},
		{"web=a=b:1", `more than one "="`},
		{"web@", `empty digest after "@"`},
		{"web:1@" + digestA + "@" + digestA, `more than one "@"`},
		{"web:", `empty tag after ":"`},
		{"web=:1", "missing new name"},
		{"Web:1", `path component "Web"`},
		{"web:-1", `tag "-1" must match`},
		{"web:.1", `tag ".1" must match`},
		{"web:" + strings.Repeat("a", 129), "must match"},
		{"web@sha256:abc", "sha256 needs 64 lower-case hex digits"},
		{"web@sha256:" + strings.Repeat("A", 64), "lower-case hex"},
		{"web@md5:" + strings.Repeat("a", 32), `algorithm "md5" is not supported`},
		{"web@" + strings.Repeat("a", 64), "must be algorithm:hex"},
		{"*:1", `"*" is only allowed for the new name`},
		{"web=reg//web:1", `path component ""`},
		{"web=reg/web/:1", `path component ""`},
		{"web=-reg.example.com/web:1", "registry host"},
		{"web=reg.example.com:99999999/web:1", "registry host"},
		{"web=reg/web..x:1", "path component"},
		{"web:1 ", "character ' '"},
		{"web:1;rm -rf /", "character ';'"},
		{"web:$(id)", "character '$'"},
		{"web:`id`", "character '`'"},
		{"web:1\nnewTag: 2", `character '\n'`},
		{"web:1\x00", `character '\x00'`},
		{"web:1\"", `character '"'`},
		{"web:1'", `character '\''`},
		{"web:1#x", "character '#'"},
		{"wéb:1", "character 'é'"},
		{"web:1&&x", "character '&'"},
		{"web:1|x", "character '|'"},
		{strings.Repeat("a", 1100), "longer than 1024 bytes"},
		{strings.Repeat("a", 256) + ":1", "longer than 255"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			t.Parallel()
			got, err := ParseImageArg(tt.arg)
			if err == nil {
				t.Fatalf("ParseImageArg(%q) = %+v, want an error", tt.arg, got)
			}
			if !errors.Is(err, ErrInvalidImage) {
				t.Errorf("error %v does not wrap ErrInvalidImage", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if tt.arg != "" && len(tt.arg) < 160 && !strings.Contains(err.Error(), quoteArg(tt.arg)) {
				t.Errorf("error %q does not name the argument", err)
			}
		})
	}
}

func TestValidateImage(t *testing.T) {
	t.Parallel()
	valid := []types.Image{
		{Name: "web"},
		{Name: "web", NewName: "*", NewTag: "*", Digest: "*"},
		{Name: "web", NewName: "reg:5000/x/web", NewTag: "1", Digest: digestA},
		{Name: "web", NewTag: "1", TagSuffix: "-alpine"},
		{Name: "web", TagSuffix: "*"},
	}
	for _, img := range valid {
		if err := ValidateImage(img); err != nil {
			t.Errorf("ValidateImage(%+v): %v", img, err)
		}
	}
	invalid := []struct {
		img  types.Image
		want string
	}{
		{types.Image{}, "name is empty"},
		{types.Image{Name: "web", NewTag: "1\nx: y"}, `tag "1\nx: y"`},
		{types.Image{Name: "web", NewTag: "a b"}, "must match"},
		{types.Image{Name: "web", NewName: "Reg/Web"}, "new name"},
		{types.Image{Name: "web", Digest: "sha256:zz"}, "digest"},
		{types.Image{Name: "web:1"}, "must not include a tag"},
		{types.Image{Name: "web", TagSuffix: "-x\nname: api"}, "tag suffix"},
		{types.Image{Name: "web", TagSuffix: "@sha256"}, "tag suffix"},
	}
	for _, tt := range invalid {
		err := ValidateImage(tt.img)
		if err == nil || !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ValidateImage(%+v) = %v, want ErrInvalidImage containing %q", tt.img, err, tt.want)
		}
	}
}

func TestFormatImage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		img  types.Image
		want string
	}{
		{types.Image{Name: "web"}, "web"},
		{types.Image{Name: "web", NewTag: "1.2"}, "web:1.2"},
		{types.Image{Name: "web", NewName: "reg/web"}, "reg/web"},
		{types.Image{Name: "web", NewName: "reg/web", NewTag: "1.2"}, "reg/web:1.2"},
		{types.Image{Name: "web", NewName: "reg/web", Digest: digestA}, "reg/web@" + digestA},
		{types.Image{Name: "web", NewName: "localhost:5000/web", NewTag: "1", Digest: digestA}, "localhost:5000/web:1@" + digestA},
		{types.Image{Name: "web", TagSuffix: "-debug"}, "web:-debug"},
		{types.Image{Name: "web", NewTag: "1", TagSuffix: "-debug"}, "web:1"},
	}
	for _, tt := range tests {
		if got := FormatImage(tt.img); got != tt.want {
			t.Errorf("FormatImage(%+v) = %q, want %q", tt.img, got, tt.want)
		}
	}
}

// TestParseFormatRoundTrip: for a fully specified argument, formatting the parsed image
// gives back the reference after "=".
func TestParseFormatRoundTrip(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{
		"reg.example.com/team/web:1.2",
		"localhost:5000/web@" + digestA,
		"localhost:5000/web:v1@" + digestA,
		"web:latest",
	} {
		img, err := ParseImageArg("x=" + ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := FormatImage(img); got != ref {
			t.Errorf("FormatImage(ParseImageArg(x=%s)) = %q", ref, got)
		}
	}
}
