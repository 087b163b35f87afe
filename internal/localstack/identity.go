package localstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/signet-operator/signet/internal/testenv"
)

// OperatorIdentity is the operator's ServiceAccount as config/default installs it, with a
// client configuration that authenticates as that ServiceAccount (a TokenRequest token, as
// the kubelet mounts into the operator's pod). Requests made with it are authorized by the
// RBAC of config/ only: no system:masters, no impersonation.
type OperatorIdentity struct {
	Namespace      string // the operator's (and trust) namespace, signet-system
	ServiceAccount string // signet-controller-manager
	cfg            *rest.Config

	mu        sync.Mutex
	forbidden []string // requests the apiserver refused (403), "VERB URL"
}

// Username is the ServiceAccount's user name, system:serviceaccount:<ns>:<name>.
func (id *OperatorIdentity) Username() string {
	return "system:serviceaccount:" + id.Namespace + ":" + id.ServiceAccount
}

// RESTConfig returns a copy of the operator's client configuration. Every request refused
// with 403 through it is recorded (Forbidden), so that a test can fail on a gap in the RBAC
// even where the operator only logs the error and retries.
func (id *OperatorIdentity) RESTConfig() *rest.Config {
	cfg := rest.CopyConfig(id.cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err == nil && resp.StatusCode == http.StatusForbidden {
				id.mu.Lock()
				id.forbidden = append(id.forbidden, req.Method+" "+req.URL.RequestURI())
				id.mu.Unlock()
			}
			return resp, err
		})
	}
	return cfg
}

// UnrecordedRESTConfig is the same identity without the 403 recorder: for tests that
// expect a refusal.
func (id *OperatorIdentity) UnrecordedRESTConfig() *rest.Config { return rest.CopyConfig(id.cfg) }

// Forbidden lists the requests refused so far through RESTConfig.
func (id *OperatorIdentity) Forbidden() []string {
	id.mu.Lock()
	defer id.mu.Unlock()
	return append([]string(nil), id.forbidden...)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// InstallOperator applies what config/default installs, except the Deployment and the
// PodDisruptionBudget (no pod runs here: the caller runs the operator in-process or as a
// local process in its place) and the CRD (Options.ExtraCRDDirs installs it): the
// namespace, the ServiceAccount and every Role, ClusterRole and binding. It then waits
// until the apiserver authorizes the ServiceAccount and returns its identity with a token
// valid for tokenTTL (at least 10 minutes; the token is not refreshed).
func (s *Stack) InstallOperator(ctx context.Context, tokenTTL time.Duration) (*OperatorIdentity, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	built, err := s.kubectl(ctx, nil, "kustomize", filepath.Join(root, "config", "default"))
	if err != nil {
		return nil, fmt.Errorf("localstack: kustomize config/default: %w", err)
	}
	var keep bytes.Buffer
	id := &OperatorIdentity{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(built), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("localstack: decoding config/default: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		switch u.GetKind() {
		case "Deployment", "PodDisruptionBudget", "CustomResourceDefinition":
			continue
		case "ServiceAccount":
			id.Namespace, id.ServiceAccount = u.GetNamespace(), u.GetName()
		}
		j, err := u.MarshalJSON()
		if err != nil {
			return nil, err
		}
		keep.Write(j)
		keep.WriteByte('\n')
	}
	if id.ServiceAccount == "" {
		return nil, errors.New("localstack: config/default has no ServiceAccount")
	}
	// The Role in Kyverno's namespace for private registries' credentials: installed on its
	// own (README.md, "Private registries"), as an administrator would.
	creds, err := filepath.Glob(filepath.Join(root, "config", "rbac", "kyverno-credentials", "*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range creds {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("localstack: decoding %s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			j, err := u.MarshalJSON()
			if err != nil {
				return nil, err
			}
			keep.Write(j)
			keep.WriteByte('\n')
		}
	}
	if out, err := s.kubectl(ctx, &keep, "apply", "--server-side", "--force-conflicts", "--field-manager=signet-install", "-f", "-"); err != nil {
		return nil, fmt.Errorf("localstack: applying config/default: %w\n%s", err, out)
	}

	tokenTTL = max(tokenTTL, 10*time.Minute)
	tr, err := s.kube.CoreV1().ServiceAccounts(id.Namespace).CreateToken(ctx, id.ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(tokenTTL / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("localstack: requesting a token for %s/%s: %w", id.Namespace, id.ServiceAccount, err)
	}
	id.cfg = &rest.Config{
		Host:            s.APIServerURL(),
		TLSClientConfig: rest.TLSClientConfig{CAData: s.pki.caPEM},
		BearerToken:     tr.Status.Token,
		UserAgent:       "signet",
	}

	// The authorizer learns new bindings from an informer: wait until it knows them, so that
	// the first refused request is a gap in the RBAC and not a race with the install.
	kube, err := kubernetes.NewForConfig(id.cfg)
	if err != nil {
		return nil, err
	}
	err = waitUntil(ctx, "the operator's RBAC", pollInterval, nil, func(ctx context.Context) (bool, error) {
		for _, ra := range []authorizationv1.ResourceAttributes{
			{Group: "trust.signet.dev", Resource: "trustedregistries", Verb: "watch"},
			{Resource: "secrets", Verb: "watch", Namespace: id.Namespace},
			{Group: "coordination.k8s.io", Resource: "leases", Verb: "create", Namespace: id.Namespace},
		} {
			r, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{})
			if err != nil {
				return false, nil // not authenticated yet: retry
			}
			if !r.Status.Allowed {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	// The token must really name the ServiceAccount (not an admin that happens to pass).
	who, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("localstack: who is the operator: %w", err)
	}
	if u := who.Status.UserInfo; u.Username != id.Username() || slices.Contains(u.Groups, "system:masters") {
		return nil, fmt.Errorf("localstack: the operator's token authenticates as %q %v, want %q without system:masters", u.Username, u.Groups, id.Username())
	}
	s.logf("localstack: config/default installed; the operator runs as %s", id.Username())
	return id, nil
}

// kubectl runs the stack's kubectl with the admin kubeconfig.
func (s *Stack) kubectl(ctx context.Context, stdin *bytes.Buffer, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.KubectlPath(), append([]string{"--kubeconfig", s.kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.String()...), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}
