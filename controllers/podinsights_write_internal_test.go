package controllers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
)

// TestPatchStatusRequest: a coverage write is one merge patch of the status subresource,
// asking for metadata alone, with no query parameters; a success's answer is not decoded,
// and a missing registry is reported as NotFound.
func TestPatchStatusRequest(t *testing.T) {
	const patch = `{"status":{"coverage":{"pods":1,"uncovered":null,"uncoveredPods":0}}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.Method != http.MethodPatch || r.URL.RawQuery != "" ||
			r.Header.Get("Content-Type") != "application/merge-patch+json" ||
			!strings.HasPrefix(r.Header.Get("Accept"), "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;") ||
			string(body) != patch:
			t.Errorf("request %s %s?%s, content type %q, accept %q, body %s", r.Method, r.URL.Path, r.URL.RawQuery,
				r.Header.Get("Content-Type"), r.Header.Get("Accept"), body)
			w.WriteHeader(http.StatusBadRequest)
		case r.URL.Path == "/apis/trust.signet.dev/v1alpha1/trustedregistries/a/status":
			_, _ = io.WriteString(w, "not decoded")
		case r.URL.Path == "/apis/trust.signet.dev/v1alpha1/trustedregistries/gone/status":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,`+
				`"details":{"name":"gone","group":"trust.signet.dev","kind":"trustedregistries"}}`)
		default:
			t.Errorf("path %s", r.URL.Path)
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	rc, err := coverageClient(&rest.Config{Host: srv.URL}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	p := &podInsights{registries: rc}
	if err := p.patchStatus(context.Background(), "a", []byte(patch)); err != nil {
		t.Errorf("patch of a: %v", err)
	}
	if err := p.patchStatus(context.Background(), "gone", []byte(patch)); !apierrors.IsNotFound(err) {
		t.Errorf("patch of a missing registry: %v, want NotFound", err)
	}
}
