package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/render"
)

// CredentialsReconciler keeps the pull credentials of private registries where Kyverno
// reads them (README.md, "Private registries"). Kyverno reads registry credentials only
// from Secrets in its own namespace; a TrustedRegistry names a kubernetes.io/dockerconfigjson
// Secret in the trust namespace (spec.credentials). This controller merges the docker
// configs of every TrustedRegistry that names one into ONE Secret in Kyverno's namespace,
// trustv1alpha1.CredentialsCopyName, which the generated policies list
// (credentials.secrets, imageRegistryCredentials.secrets).
//
// Why one merged Secret: Signet's access to Kyverno's namespace can then be limited to
// create plus get/update/delete of that single resourceName (config/rbac/kyverno-credentials):
// no list or watch of Secrets there, where Kyverno keeps its own TLS keys. The copy is not
// watched; drift is repaired on every pass and at least every credentialsResync.
//
// The credentials are never logged and never put into status, events or errors: messages
// name Secrets and registry hosts only.
type CredentialsReconciler struct {
	// Client reads TrustedRegistries and trust-namespace Secrets (cached) and writes.
	Client client.Client
	// APIReader reads the copy in Kyverno's namespace, which is not in the cache.
	APIReader        client.Reader
	TrustNamespace   string
	KyvernoNamespace string

	// wrote is set once this process has written the copy.
	wrote atomic.Bool
}

// mayHoldCopy tells whether a copy may exist in Kyverno's namespace: this process wrote
// one, or a registry has (or had, while it is being deleted) a CredentialsSynced condition.
// Otherwise Kyverno's namespace is not touched at all, so an installation that does not use
// spec.credentials needs no access to it (config/rbac/kyverno-credentials is optional).
func (r *CredentialsReconciler) mayHoldCopy(items []trustv1alpha1.TrustedRegistry) bool {
	if r.wrote.Load() {
		return true
	}
	for i := range items {
		if meta.FindStatusCondition(items[i].Status.Conditions, trustv1alpha1.ConditionCredentialsSynced) != nil {
			return true
		}
	}
	return false
}

// DefaultKyvernoNamespace is the namespace Kyverno runs in unless --kyverno-namespace says
// otherwise (the Helm chart's default).
const DefaultKyvernoNamespace = "kyverno"

// credentialsSecretIndex indexes TrustedRegistries by spec.credentials.secretName.
const credentialsSecretIndex = "spec.credentials.secretName"

// credentialsResync bounds how long a foreign edit of the copy survives.
const credentialsResync = 5 * time.Minute

// credentialsFieldOwner owns the CredentialsSynced condition (server-side apply on status).
const credentialsFieldOwner = "signet-credentials"

var credentialsRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "credentials"}}

// SetupWithManager registers the controller: any TrustedRegistry change, and any change of
// a Secret a TrustedRegistry names as credentials, runs one pass over all of them.
func (r *CredentialsReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &trustv1alpha1.TrustedRegistry{}, credentialsSecretIndex,
		func(o client.Object) []string {
			if c := o.(*trustv1alpha1.TrustedRegistry).Spec.Credentials; c != nil {
				return []string{c.SecretName}
			}
			return nil
		}); err != nil {
		return fmt.Errorf("indexing TrustedRegistries by credentials Secret: %w", err)
	}
	one := func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{credentialsRequest}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("registrycredentials").
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Watches(&trustv1alpha1.TrustedRegistry{}, handler.EnqueueRequestsFromMapFunc(one), builder.WithPredicates(beyondInsights)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			if o.GetNamespace() != r.TrustNamespace {
				return nil
			}
			list := &trustv1alpha1.TrustedRegistryList{}
			if err := r.Client.List(ctx, list, client.MatchingFields{credentialsSecretIndex: o.GetName()}); err != nil || len(list.Items) == 0 {
				return nil
			}
			return []reconcile.Request{credentialsRequest}
		})).
		Complete(r)
}

// credentialsOutcome is what one registry's credentials came to.
type credentialsOutcome struct {
	status metav1.ConditionStatus
	reason string
	msg    string
}

// dockerConfigJSON is the part of a .dockerconfigjson document Kyverno reads.
type dockerConfigJSON struct {
	Auths map[string]json.RawMessage `json:"auths"`
}

// mergeCredentials is pure: from the registries (sorted by name) and their Secrets (by
// name; nil when missing) it builds the merged docker config (nil: none needed) and each
// registry's outcome. For a host that two Secrets give different credentials, the first
// registry by name wins and the other is told so.
func mergeCredentials(registries []*trustv1alpha1.TrustedRegistry, secrets map[string]*corev1.Secret, ns string) ([]byte, map[string]credentialsOutcome) {
	out := map[string]credentialsOutcome{}
	merged := map[string]json.RawMessage{}
	from := map[string]string{} // host -> registry that supplied it
	for _, tr := range registries {
		name := tr.Spec.Credentials.SecretName
		s := secrets[name]
		switch {
		case s == nil:
			out[tr.Name] = credentialsOutcome{metav1.ConditionFalse, trustv1alpha1.ReasonCredentialsSecretNotFound,
				fmt.Sprintf("Secret %s/%s not found: Kyverno cannot read this registry's images or signatures, so its Pods are denied", ns, name)}
			continue
		case s.Type != corev1.SecretTypeDockerConfigJson:
			out[tr.Name] = credentialsOutcome{metav1.ConditionFalse, trustv1alpha1.ReasonCredentialsInvalid,
				fmt.Sprintf("Secret %s/%s is of type %q, want %s", ns, name, s.Type, corev1.SecretTypeDockerConfigJson)}
			continue
		}
		var cfg dockerConfigJSON
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil || len(cfg.Auths) == 0 {
			// the parse error may quote the data: never repeat it
			out[tr.Name] = credentialsOutcome{metav1.ConditionFalse, trustv1alpha1.ReasonCredentialsInvalid,
				fmt.Sprintf("Secret %s/%s: %s is not a docker config with auths", ns, name, corev1.DockerConfigJsonKey)}
			continue
		}
		hosts := make([]string, 0, len(cfg.Auths))
		for h := range cfg.Auths {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		var conflicts []string
		for _, h := range hosts {
			if prev, ok := merged[h]; ok && string(prev) != string(cfg.Auths[h]) {
				conflicts = append(conflicts, fmt.Sprintf("%s (TrustedRegistry %s's are used)", h, from[h]))
				continue
			}
			merged[h], from[h] = cfg.Auths[h], tr.Name
		}
		if len(conflicts) > 0 {
			out[tr.Name] = credentialsOutcome{metav1.ConditionFalse, trustv1alpha1.ReasonCredentialsConflict,
				fmt.Sprintf("Secret %s/%s has other credentials than another TrustedRegistry for %v", ns, name, conflicts)}
			continue
		}
		out[tr.Name] = credentialsOutcome{metav1.ConditionTrue, trustv1alpha1.ReasonCredentialsCopied,
			fmt.Sprintf("Secret %s/%s is copied for Kyverno (hosts %v)", ns, name, hosts)}
	}
	if len(merged) == 0 {
		return nil, out
	}
	b, _ := json.Marshal(dockerConfigJSON{Auths: merged}) // map keys sorted: deterministic
	return b, out
}

// Reconcile makes one pass: read, merge, write the copy, report.
func (r *CredentialsReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	list := &trustv1alpha1.TrustedRegistryList{}
	if err := r.Client.List(ctx, list); err != nil {
		return ctrl.Result{}, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	var users []*trustv1alpha1.TrustedRegistry
	secrets := map[string]*corev1.Secret{}
	for i := range list.Items {
		tr := &list.Items[i]
		if tr.Spec.Credentials == nil || !tr.DeletionTimestamp.IsZero() {
			continue
		}
		users = append(users, tr)
		name := tr.Spec.Credentials.SecretName
		if _, done := secrets[name]; done {
			continue
		}
		s := &corev1.Secret{}
		switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.TrustNamespace, Name: name}, s); {
		case apierrors.IsNotFound(err):
			secrets[name] = nil
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("reading Secret %s/%s: %w", r.TrustNamespace, name, err)
		default:
			secrets[name] = s
		}
	}
	data, outcomes := mergeCredentials(users, secrets, r.TrustNamespace)
	if len(users) == 0 && !r.mayHoldCopy(list.Items) {
		return ctrl.Result{}, nil
	}

	if err := r.writeCopy(ctx, data); err != nil {
		for name, o := range outcomes {
			if o.status == metav1.ConditionTrue {
				outcomes[name] = credentialsOutcome{metav1.ConditionFalse, trustv1alpha1.ReasonCredentialsCopyFailed,
					fmt.Sprintf("writing Secret %s/%s: %v", r.KyvernoNamespace, trustv1alpha1.CredentialsCopyName, apierrors.ReasonForError(err))}
			}
		}
		_ = r.report(ctx, list.Items, outcomes)
		return ctrl.Result{}, fmt.Errorf("writing Secret %s/%s: %s", r.KyvernoNamespace, trustv1alpha1.CredentialsCopyName, apierrors.ReasonForError(err))
	}
	if err := r.report(ctx, list.Items, outcomes); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: credentialsResync}, nil
}

// writeCopy creates, updates or deletes the merged Secret in Kyverno's namespace.
func (r *CredentialsReconciler) writeCopy(ctx context.Context, data []byte) error {
	key := types.NamespacedName{Namespace: r.KyvernoNamespace, Name: trustv1alpha1.CredentialsCopyName}
	live := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, live)
	switch {
	case apierrors.IsNotFound(err):
		if data == nil {
			return nil
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace,
				Labels: map[string]string{render.LabelManagedBy: managedByValue}},
			Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
		}
		if err := r.Client.Create(ctx, s); err != nil {
			return err
		}
		r.wrote.Store(true)
		log.FromContext(ctx).Info("registry credentials copied for Kyverno", "secret", key.String())
		return nil
	case err != nil:
		return err
	}
	if data == nil {
		if err := r.Client.Delete(ctx, live, client.Preconditions{UID: &live.UID}); client.IgnoreNotFound(err) != nil {
			return err
		}
		r.wrote.Store(false)
		log.FromContext(ctx).Info("registry credentials copy deleted: no TrustedRegistry names credentials", "secret", key.String())
		return nil
	}
	if live.Type != corev1.SecretTypeDockerConfigJson {
		// the type is immutable: replace the Secret
		if err := r.Client.Delete(ctx, live, client.Preconditions{UID: &live.UID}); client.IgnoreNotFound(err) != nil {
			return err
		}
		return fmt.Errorf("replacing Secret %s of type %s", key, live.Type)
	}
	if string(live.Data[corev1.DockerConfigJsonKey]) == string(data) && len(live.Data) == 1 && live.Labels[render.LabelManagedBy] == managedByValue {
		return nil
	}
	live.Data = map[string][]byte{corev1.DockerConfigJsonKey: data}
	if live.Labels == nil {
		live.Labels = map[string]string{}
	}
	live.Labels[render.LabelManagedBy] = managedByValue
	if err := r.Client.Update(ctx, live); err != nil {
		return err
	}
	r.wrote.Store(true)
	log.FromContext(ctx).Info("registry credentials copy updated", "secret", key.String())
	return nil
}

// report sets the CredentialsSynced condition of each registry that names credentials,
// and removes it from those that no longer do; only the condition is written (server-side
// apply with its own field owner), so the TrustedRegistry controller's status is untouched.
func (r *CredentialsReconciler) report(ctx context.Context, items []trustv1alpha1.TrustedRegistry, outcomes map[string]credentialsOutcome) error {
	var errs []error
	for i := range items {
		tr := &items[i]
		cur := meta.FindStatusCondition(tr.Status.Conditions, trustv1alpha1.ConditionCredentialsSynced)
		o, uses := outcomes[tr.Name]
		var conds []any
		switch {
		case uses:
			if cur != nil && string(cur.Status) == string(o.status) && cur.Reason == o.reason && cur.Message == o.msg && cur.ObservedGeneration == tr.Generation {
				continue
			}
			ltt := metav1.Now()
			if cur != nil && cur.Status == o.status {
				ltt = cur.LastTransitionTime
			}
			conds = []any{map[string]any{
				"type": trustv1alpha1.ConditionCredentialsSynced, "status": string(o.status), "reason": o.reason,
				"message": o.msg, "observedGeneration": tr.Generation, "lastTransitionTime": ltt.UTC().Format(time.RFC3339),
			}}
		case cur == nil:
			continue
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": trustv1alpha1.GroupVersion.String(), "kind": "TrustedRegistry",
			"metadata": map[string]any{"name": tr.Name},
			"status":   map[string]any{"conditions": conds},
		}}
		if conds == nil {
			// no longer used: the condition leaves with this owner's last applied entry
			u.Object["status"] = map[string]any{"conditions": []any{}}
		}
		if err := r.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(credentialsFieldOwner), client.ForceOwnership); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("TrustedRegistry %s status: %w", tr.Name, err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}
