package controllers_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/signet-operator/signet/internal/operator"
)

// watchEncodings records, per watch the manager opens, whether the apiserver's stream came
// gzip-compressed (the transport un-gzips it transparently and says so in Uncompressed).
type watchEncodings struct {
	mu               sync.Mutex
	watches, gzipped int
}

func (w *watchEncodings) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err == nil && req.URL.Query().Get("watch") == "true" {
			w.mu.Lock()
			w.watches++
			if resp.Uncompressed || resp.Header.Get("Content-Encoding") != "" {
				w.gzipped++
			}
			w.mu.Unlock()
		}
		return resp, err
	})
}

func (w *watchEncodings) counts() (watches, gzipped int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watches, w.gzipped
}

// TestInsightsWatchStreamsUncompressed: by default the manager asks the apiserver for
// uncompressed responses, as kube-controller-manager does, so that no watch event (every
// Pod change, every coverage write) is un-gzipped; --kube-api-compression turns gzip back on
// (internal/operator, docs/performance.md "Pod insights").
func TestInsightsWatchStreamsUncompressed(t *testing.T) {
	needsControlPlane(t)
	for _, tc := range []struct {
		name     string
		compress bool
	}{{"default", false}, {"kube-api-compression", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := rest.CopyConfig(sharedCfg)
			rec := &watchEncodings{}
			cfg.Wrap(rec.wrap)
			mgr, err := operator.New(cfg, operator.Options{
				TrustNamespace:               trustNS,
				PodInsights:                  true,
				CountBlocked:                 true,
				KubeAPICompression:           tc.compress,
				SkipControllerNameValidation: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- mgr.Start(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("manager: %v", err)
				}
			}()
			syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
			defer syncCancel()
			if !mgr.GetCache().WaitForCacheSync(syncCtx) {
				t.Fatal("the manager's cache did not sync")
			}
			watches, gzipped := rec.counts()
			if watches == 0 {
				t.Fatal("the manager opened no watch")
			}
			switch {
			case !tc.compress && gzipped > 0:
				t.Errorf("%d of %d watch streams came gzip-compressed; want none by default", gzipped, watches)
			case tc.compress && gzipped == 0:
				t.Errorf("none of %d watch streams came gzip-compressed with KubeAPICompression", watches)
			}
			t.Logf("%d watches, %d gzip-compressed", watches, gzipped)
		})
	}
}
