package localstack

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// TestOperatorIdentityRecordsRefusals: a request the apiserver refuses (403) through the
// operator's configuration is recorded, so that the e2e run and the demo fail on a gap in
// the RBAC; allowed requests and the unrecorded configuration leave no record.
func TestOperatorIdentityRecordsRefusals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "secrets") {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`, http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	id := &OperatorIdentity{Namespace: "signet-system", ServiceAccount: "signet-controller-manager", cfg: &rest.Config{Host: srv.URL}}
	get := func(cfg *rest.Config, path string) {
		t.Helper()
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get(id.RESTConfig(), "/api/v1/pods")
	get(id.UnrecordedRESTConfig(), "/api/v1/secrets")
	if got := id.Forbidden(); len(got) != 0 {
		t.Fatalf("recorded %v before any refusal through the recorded configuration", got)
	}
	get(id.RESTConfig(), "/api/v1/secrets?limit=1")
	if got := id.Forbidden(); len(got) != 1 || got[0] != "GET /api/v1/secrets?limit=1" {
		t.Fatalf("recorded %v, want the refused GET of secrets", got)
	}
	if id.Username() != "system:serviceaccount:signet-system:signet-controller-manager" {
		t.Errorf("username %q", id.Username())
	}
}
