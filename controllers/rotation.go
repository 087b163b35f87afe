package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers/status"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/verify"
)

// RotationPreview verifies, while keys are retiring, the images running in a registry's
// guarded namespaces against the keys that will remain, so that an operator learns which
// workloads a retirement would break before it happens.
//
// Verification contacts registries, so it is opt-in (--rotation-preview) and runs in the
// background: a reconcile never waits on the network. It asks for a check and reads the
// newest finished answer; a finished check re-enqueues its TrustedRegistry.
type RotationPreview struct {
	// Verifier checks images (cached by digest and key set, bounded concurrency).
	Verifier *verify.Verifier
	// Concurrency bounds parallel verifications per check.
	Concurrency int
	// Timeout bounds one check.
	Timeout time.Duration
	// CredentialsSecret names a kubernetes.io/dockerconfigjson Secret in the trust
	// namespace used to authenticate to registries ("" = anonymous). Pods' own
	// imagePullSecrets live in their namespaces, which Signet may not read.
	CredentialsSecret string

	ctx    context.Context
	events chan event.GenericEvent
	mu     sync.Mutex
	state  map[string]*previewState
}

type previewState struct {
	key     string
	running bool
	result  *trustv1alpha1.RotationPreview
}

// Start keeps the manager's context for background checks (manager.Runnable).
func (p *RotationPreview) Start(ctx context.Context) error {
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
	<-ctx.Done()
	return nil
}

// NeedLeaderElection is true: only the leader reconciles, so only it previews.
func (p *RotationPreview) NeedLeaderElection() bool { return true }

func (p *RotationPreview) init() {
	if p.events == nil {
		p.events = make(chan event.GenericEvent, 64)
		p.state = map[string]*previewState{}
	}
	if p.Concurrency <= 0 {
		p.Concurrency = verify.DefaultConcurrency
	}
	if p.Timeout <= 0 {
		p.Timeout = 2 * time.Minute
	}
}

// runningImage is one covered image in use and the Pods using it.
type runningImage struct {
	pods    int32
	example string
}

// observePreview returns the newest finished preview for the current ring and running
// images, and starts a check when there is none. It returns nil when no key is retiring.
// pending is true while a check for the current state is running.
func (r *TrustedRegistryReconciler) observePreview(ctx context.Context, registry *trustv1alpha1.TrustedRegistry,
	ring keys.Ring, pods []*corev1.Pod) (preview *trustv1alpha1.RotationPreview, pending bool, err error) {
	p := r.Preview
	var retiring []string
	var remaining []render.Key
	for _, e := range ring.Entries {
		if e.State == trustv1alpha1.KeyRetiring {
			retiring = append(retiring, fmt.Sprintf("%s (%s)", e.Name, e.Fingerprint))
			continue
		}
		remaining = append(remaining, render.Key{Name: e.Name, Fingerprint: e.Fingerprint, PEM: e.PEM, State: e.State})
	}
	if len(retiring) == 0 {
		p.forget(registry.Name)
		return nil, false, nil
	}
	sort.Strings(retiring)

	images := runningCoveredImages(registry, pods)
	keychain, err := r.previewKeychain(ctx, registry)
	if err != nil {
		return nil, false, err
	}
	key := previewKey(registry, remaining, images)

	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state[registry.Name]
	if st == nil {
		st = &previewState{}
		p.state[registry.Name] = st
	}
	if st.key == key && st.result != nil {
		return st.result, false, nil
	}
	if (!st.running || st.key != key) && p.ctx != nil {
		st.key, st.running = key, true
		go p.check(registry.DeepCopy(), remaining, retiring, images, keychain, key)
	}
	// Show the previous answer (if any) while the new one is computed.
	return st.result, true, nil
}

func (p *RotationPreview) forget(name string) {
	p.mu.Lock()
	delete(p.state, name)
	p.mu.Unlock()
}

// check verifies the images against the remaining keys and stores the answer.
func (p *RotationPreview) check(registry *trustv1alpha1.TrustedRegistry, remaining []render.Key, retiring []string,
	images map[string]*runningImage, keychain authn.Keychain, key string) {
	p.mu.Lock()
	parent := p.ctx
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(parent, p.Timeout)
	defer cancel()

	names := make([]string, 0, len(images))
	for image := range images {
		names = append(names, image)
	}
	sort.Strings(names)
	reqs := make([]verify.Request, 0, len(names))
	for _, image := range names {
		reqs = append(reqs, verify.Request{Registry: registry, Keys: remaining, Image: image, Keychain: keychain})
	}
	outcomes := p.Verifier.VerifyMany(ctx, reqs, p.Concurrency)

	res := &trustv1alpha1.RotationPreview{RetiringKeys: retiring, Images: int32(len(names))} //nolint:gosec // bounded by the Pods in the cache
	for i, o := range outcomes {
		use := images[names[i]]
		switch {
		case o.Err != nil:
			res.Inconclusive++
			res.AtRiskImages = append(res.AtRiskImages, atRisk(names[i], use, "could not be checked: "+o.Err.Error()))
		case o.Result.OK:
			res.Safe++
		case o.Result.Inconclusive:
			res.Inconclusive++
			res.AtRiskImages = append(res.AtRiskImages, atRisk(names[i], use, "could not be checked: "+o.Result.Reason))
		default:
			res.AtRisk++
			res.AtRiskImages = append(res.AtRiskImages, atRisk(names[i], use, o.Result.Reason))
		}
	}
	res.AtRiskImages = mostUsedFirst(res.AtRiskImages, func(a trustv1alpha1.AtRiskImage) (int32, string) { return a.Pods, a.Image })

	p.mu.Lock()
	if st := p.state[registry.Name]; st != nil && st.key == key {
		st.result, st.running = res, false
	}
	p.mu.Unlock()
	select {
	case p.events <- event.GenericEvent{Object: registry}:
	case <-parent.Done():
	}
}

func atRisk(image string, use *runningImage, reason string) trustv1alpha1.AtRiskImage {
	return trustv1alpha1.AtRiskImage{Image: image, Pods: use.pods, Example: use.example, Reason: status.Truncate(reason, 256)}
}

// previewKey identifies what a check depends on: the spec, the remaining keys and the
// running images.
func previewKey(registry *trustv1alpha1.TrustedRegistry, remaining []render.Key, images map[string]*runningImage) string {
	h := sha256.New()
	spec, _ := json.Marshal(registry.Spec)
	h.Write(spec)
	for _, k := range remaining {
		fmt.Fprintf(h, "|%s:%s", k.Name, k.Fingerprint)
	}
	names := make([]string, 0, len(images))
	for image := range images {
		names = append(names, image)
	}
	sort.Strings(names)
	for _, image := range names {
		fmt.Fprintf(h, "|%s", image)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// runningCoveredImages lists the images of the guarded Pods that spec.images covers.
func runningCoveredImages(registry *trustv1alpha1.TrustedRegistry, pods []*corev1.Pod) map[string]*runningImage {
	matcher := render.NewMatcher(registryPatterns(registry))
	out := map[string]*runningImage{}
	for _, pod := range pods {
		countImages(out, pod, matcher.Match)
	}
	return out
}

// previewKeychain authenticates with the registry's own credentials (spec.credentials,
// the Secret Kyverno reads a copy of), else with the dockerconfigjson Secret named by
// CredentialsSecret in the trust namespace, or anonymously.
func (r *TrustedRegistryReconciler) previewKeychain(ctx context.Context, registry *trustv1alpha1.TrustedRegistry) (authn.Keychain, error) {
	name := r.Preview.CredentialsSecret
	if c := registry.Spec.Credentials; c != nil {
		name = c.SecretName
	}
	if name == "" {
		return anonymousKeychain{}, nil
	}
	s := &corev1.Secret{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.TrustNamespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) && registry.Spec.Credentials != nil {
			// reported by the CredentialsSynced condition; the preview says inconclusive
			return anonymousKeychain{}, nil
		}
		return nil, fmt.Errorf("reading registry credentials Secret %s/%s: %w", r.TrustNamespace, name, err)
	}
	kc, err := dockerConfigKeychain(s.Data[corev1.DockerConfigJsonKey])
	if err != nil {
		log.FromContext(ctx).Error(err, "registry credentials Secret is unusable; previewing anonymously", "secret", name)
		return anonymousKeychain{}, nil
	}
	return kc, nil
}

type anonymousKeychain struct{}

func (anonymousKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.Anonymous, nil
}

// dockerConfigKeychain resolves credentials from a .dockerconfigjson document.
type dockerConfig struct {
	Auths map[string]authn.AuthConfig `json:"auths"`
}

func (c dockerConfig) Resolve(res authn.Resource) (authn.Authenticator, error) {
	host := res.RegistryStr()
	for _, candidate := range []string{host, "https://" + host, "http://" + host, "https://" + host + "/v1/", "https://" + host + "/v2/"} {
		if cfg, ok := c.Auths[candidate]; ok {
			return authn.FromConfig(cfg), nil
		}
	}
	if host == name.DefaultRegistry {
		if cfg, ok := c.Auths["https://index.docker.io/v1/"]; ok {
			return authn.FromConfig(cfg), nil
		}
	}
	return authn.Anonymous, nil
}

func dockerConfigKeychain(data []byte) (authn.Keychain, error) {
	var cfg dockerConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parsing .dockerconfigjson: %w", err)
	}
	// The "auth" field (base64 user:password) is decoded by authn.FromConfig's consumers;
	// normalise it into username/password here so every registry client understands it.
	for k, v := range cfg.Auths {
		if v.Auth != "" && v.Username == "" {
			if user, pass, ok := decodeAuth(v.Auth); ok {
				v.Username, v.Password, v.Auth = user, pass, ""
				cfg.Auths[k] = v
			}
		}
	}
	return cfg, nil
}

func decodeAuth(s string) (string, string, bool) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", "", false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	return user, pass, ok
}
