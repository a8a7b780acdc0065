package cluster

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// ErrNotFound means the object Get or MergePatch was given does not exist. A kind the API
// server does not serve is ErrInvalid instead.
var ErrNotFound = errors.New("not found")

// Get reads the object ref (in ref.Version, or the preferred version if it is empty). Errors
// wrap ErrNotFound, ErrUnauthorized, ErrUnreachable or ErrInvalid.
func (c *Client) Get(ctx context.Context, ref ObjectRef) (*unstructured.Unstructured, error) {
	ctx = quiet(ctx)
	mapping, err := c.mapping(ctx, ref.GroupKind(), ref.Version)
	if err != nil {
		return nil, classify(ctx, "reading "+ref.String(), err)
	}
	u, err := c.resource(mapping, ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading %s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return nil, classify(ctx, "reading "+ref.String(), err)
	}
	return u, nil
}

// MergePatch changes the object ref with a JSON merge patch (RFC 7386), such as
// {"metadata":{"annotations":{"a":"b"}}}, and returns the object as the server left it. Errors
// wrap ErrNotFound, ErrUnauthorized, ErrUnreachable, ErrInvalid or ErrApply.
func (c *Client) MergePatch(ctx context.Context, ref ObjectRef, patch []byte) (*unstructured.Unstructured, error) {
	ctx = quiet(ctx)
	mapping, err := c.mapping(ctx, ref.GroupKind(), ref.Version)
	if err != nil {
		return nil, classify(ctx, "patching "+ref.String(), err)
	}
	u, err := c.resource(mapping, ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("patching %s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return nil, classify(ctx, "patching "+ref.String(), err)
	}
	return u, nil
}
