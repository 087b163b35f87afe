package localstack

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

var getOpts = metav1.GetOptions{}

// pollInterval is how often readiness is polled; start-up phases take seconds, so 100ms
// keeps the added latency small without busy-looping.
const pollInterval = 100 * time.Millisecond

// waitHTTP polls url until it answers 200. cfg, when set, supplies TLS client
// credentials (kube-apiserver); otherwise TLS is not verified (Kyverno's self-signed
// health endpoint) and plain HTTP works (etcd).
func waitHTTP(ctx context.Context, what, url string, cfg *rest.Config, procs []*process) error {
	var client *http.Client
	if cfg != nil {
		rt, err := rest.TransportFor(cfg)
		if err != nil {
			return err
		}
		client = &http.Client{Transport: rt, Timeout: 5 * time.Second}
	} else {
		client = &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				// Local health probe of a process we started; its certificate is
				// self-signed at start-up.
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // local health probe only
				DisableKeepAlives: true,
			},
		}
	}
	defer client.CloseIdleConnections()
	return waitUntil(ctx, what, pollInterval, procs, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close() // fully read above
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("%s: %s: %s", url, resp.Status, body)
		}
		return true, nil
	})
}
