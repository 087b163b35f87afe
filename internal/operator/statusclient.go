package operator

import (
	"fmt"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ownStatusLimit is the manager's client with status writes sent through a client of their
// own. client-go rate-limits per REST client and controller-runtime makes one per resource
// kind, so --kube-api-qps is a limit per kind; with this, the status subresource has its
// own, as it has its own RBAC resource. A new TrustedRegistry costs a finalizer patch and a
// status write: under one limit, N new registries took as long as 2N writes of any single
// kind (docs/performance.md).
type ownStatusLimit struct {
	client.Client
	status client.Client
}

func (c ownStatusLimit) Status() client.SubResourceWriter { return c.status.Status() }

func (c ownStatusLimit) SubResource(subResource string) client.SubResourceClient {
	if subResource == "status" {
		return c.status.SubResource(subResource)
	}
	return c.Client.SubResource(subResource)
}

// withOwnStatusLimit returns the manager's client with status writes through a client of
// their own (same configuration, transport and scheme; no cache: it only writes).
func withOwnStatusLimit(mgr ctrl.Manager, cfg *rest.Config) (client.Client, error) {
	status, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient()})
	if err != nil {
		return nil, fmt.Errorf("creating the status client: %w", err)
	}
	return ownStatusLimit{Client: mgr.GetClient(), status: status}, nil
}
