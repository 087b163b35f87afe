package ocitest

import (
	"context"
	"crypto/subtle"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A private registry: every request needs HTTP basic auth with one user name and password,
// as a registry that holds private images does. Registry clients learn that from the 401
// answer's Basic challenge and retry with the credentials of their keychain.

// NewPrivateRegistry starts a registry that requires basic auth with user and password.
func NewPrivateRegistry(user, password string) *Registry {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="ocitest"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	return &Registry{srv: srv, host: strings.TrimPrefix(srv.URL, "http://")}
}

// NewPrivateRegistryT is NewPrivateRegistry closed at the end of the test.
func NewPrivateRegistryT(tb testing.TB, user, password string) *Registry {
	tb.Helper()
	r := NewPrivateRegistry(user, password)
	tb.Cleanup(r.Close)
	return r
}

type authKey struct{}

// WithAuth returns a context under which this package's pushes, signatures and reads
// authenticate with user and password.
func WithAuth(ctx context.Context, user, password string) context.Context {
	return context.WithValue(ctx, authKey{}, authn.FromConfig(authn.AuthConfig{Username: user, Password: password}))
}

func authOpts(ctx context.Context) []remote.Option {
	if a, ok := ctx.Value(authKey{}).(authn.Authenticator); ok {
		return []remote.Option{remote.WithAuth(a)}
	}
	return nil
}
