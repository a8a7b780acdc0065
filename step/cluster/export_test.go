package cluster

import (
	"fmt"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/transport"
)

// WithTransport returns a Client like c whose requests go through wrap, so that tests can
// record or fail them.
func WithTransport(c *Client, wrap transport.WrapperFunc) (*Client, error) {
	cfg := rest.CopyConfig(c.config)
	cfg.Wrap(wrap)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating discovery client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating dynamic client: %w", err)
	}
	cached := memory.NewMemCacheClientWithContext(dc)
	return &Client{
		config:  cfg,
		source:  c.source,
		dynamic: dyn,
		disco:   cached,
		mapper:  restmapper.NewDeferredDiscoveryRESTMapperWithContext(cached),
	}, nil
}
