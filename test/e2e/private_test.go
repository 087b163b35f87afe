//go:build e2e

// Keyless signatures verified offline against the cluster's own Fulcio root, and images in
// a registry that requires credentials (README.md, "Keyless signatures with your own
// Sigstore" and "Private registries").
//
//	go test -tags e2e -count=1 -v ./test/e2e/ -run 'SignetKeyless|SignetPrivateRegistry'
package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/localstack"
	"github.com/signet-operator/signet/internal/ocitest"
)

const (
	ghIssuer  = "https://token.actions.githubusercontent.com"
	ghSubject = "https://github.com/yourorg/app/.github/workflows/release.yml@refs/heads/main"
)

// pushKeyless pushes an image and signs it with a certificate the CA issues to id.
func (s *scenario) pushKeyless(reg *ocitest.Registry, repo string, ca *ocitest.CA, id ocitest.Identity) string {
	s.t.Helper()
	d, err := reg.PushRandomImage(s.ctx, repo)
	if err != nil {
		s.t.Fatal(err)
	}
	ks, err := ca.Issue(id)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := ocitest.SignKeyless(s.ctx, d, ks); err != nil {
		s.t.Fatal(err)
	}
	return d.String()
}

func mustCA(t *testing.T, cn string) *ocitest.CA {
	t.Helper()
	ca, err := ocitest.NewCA(cn)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// keylessRegistry trusts a GitHub Actions workflow identity, with the test CA (in a
// ConfigMap of the trust namespace) as Fulcio root and no transparency log or SCT.
func (s *scenario) keylessRegistry(name, org string, engine trustv1alpha1.Engine, ns, rootsCM string) *trustv1alpha1.TrustedRegistry {
	tr := s.registry(name, org, engine, []string{ns})
	// the opt-outs of spec.sigstore, not transparencyLog.ignore, are what skip the checks
	tr.Spec.TransparencyLog = trustv1alpha1.TransparencyLog{Ignore: ptr.To(false)}
	tr.Spec.Keyless = []trustv1alpha1.KeylessIdentity{{
		Name: "github-release", Issuer: ghIssuer, SubjectRegExp: `^https://github\.com/yourorg/.+@refs/heads/main$`,
	}}
	tr.Spec.Sigstore = &trustv1alpha1.SigstoreTrust{
		FulcioCertificates: &trustv1alpha1.TrustMaterialReference{ConfigMapName: rootsCM, Key: "fulcio.pem"},
		IgnoreTlog:         ptr.To(true),
		IgnoreSCT:          ptr.To(true),
		AcceptRisks:        []trustv1alpha1.SigstoreRisk{trustv1alpha1.RiskNoTransparencyLog, trustv1alpha1.RiskNoCertificateTimestamp},
	}
	return tr
}

// TestSignetKeylessOffline: a test CA plays Fulcio; images signed keyless (no Rekor, no
// SCT) by the trusted workflow identity are admitted, other subjects, issuers and CAs are
// denied, and replacing the root in its ConfigMap re-renders the policy. ClusterPolicy
// engine; the ImageValidatingPolicy reads its trust root from TUF
// (TestSignetKeylessImageValidatingPolicyTUF).
func TestSignetKeylessOffline(t *testing.T) {
	t.Parallel()
	s := newScenario(t, 5*time.Minute)
	const name, ns, org, cm = "keyless-cpol", "keyless-cpol", "keyless-cpol", "keyless-cpol-roots"
	s.namespaces(ns)
	ca, otherCA := mustCA(t, "test fulcio"), mustCA(t, "other fulcio")
	good := ocitest.Identity{Issuer: ghIssuer, Subject: ghSubject}
	signed := s.pushKeyless(s.reg, org+"/app", ca, good)
	otherSubject := s.pushKeyless(s.reg, org+"/app", ca, ocitest.Identity{Issuer: ghIssuer, Subject: "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main"})
	emailSubject := s.pushKeyless(s.reg, org+"/app", ca, ocitest.Identity{Issuer: ghIssuer, Subject: "dev@yourorg.example"})
	otherIssuer := s.pushKeyless(s.reg, org+"/app", ca, ocitest.Identity{Issuer: "https://accounts.google.com", Subject: ghSubject})
	otherRoot := s.pushKeyless(s.reg, org+"/app", otherCA, good)
	unsigned := s.push(s.reg, org+"/app")

	roots := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cm, Namespace: trustNS}, Data: map[string]string{"fulcio.pem": string(ca.PEM)}}
	if err := s.client.Create(s.ctx, roots); err != nil {
		t.Fatal(err)
	}
	s.create(s.keylessRegistry(name, org, trustv1alpha1.EngineClusterPolicy, ns, cm))
	s.waitReady(name, "ClusterPolicy")
	s.waitEnforced(newPod(ns, "probe", unsigned))

	s.admitted("trusted workflow identity", newPod(ns, "trusted", signed))
	deny := signatureDenial("ClusterPolicy", name)
	s.denied("another subject", newPod(ns, "other-subject", otherSubject), deny...)
	s.denied("an email subject", newPod(ns, "email-subject", emailSubject), deny...)
	s.denied("another issuer", newPod(ns, "other-issuer", otherIssuer), deny...)
	s.denied("a certificate from another CA", newPod(ns, "other-ca", otherRoot), deny...)
	s.denied("unsigned", newPod(ns, "unsigned", unsigned), deny...)

	// The root moves to the other CA: the ConfigMap is watched, the policy re-rendered.
	roots.Data["fulcio.pem"] = string(otherCA.PEM)
	if err := s.client.Update(s.ctx, roots); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	s.waitFor("the other CA's signature admitted after the root changed", func() (bool, error) {
		return s.createPod(newPod(ns, "other-ca-probe", otherRoot), true) == nil, nil
	})
	t.Logf("root change enforced %v after the ConfigMap update", time.Since(t0).Round(time.Millisecond))
	s.denied("the old CA's signature after the root changed", newPod(ns, "old-ca", signed), deny...)

	// A root that cannot be read keeps the last good policy (fail closed).
	if err := s.client.Delete(s.ctx, roots); err != nil {
		t.Fatal(err)
	}
	s.waitFor("KeysResolved False after the roots ConfigMap was deleted", func() (bool, error) {
		c := meta.FindStatusCondition(s.get(name).Status.Conditions, trustv1alpha1.ConditionKeysResolved)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == trustv1alpha1.ReasonSecretNotFound &&
			strings.Contains(c.Message, "ConfigMap "+trustNS+"/"+cm), nil
	})
	s.admitted("the other CA's signature with the roots ConfigMap gone (last good policy)", newPod(ns, "last-good", otherRoot))
	s.denied("unsigned with the roots ConfigMap gone", newPod(ns, "last-good-unsigned", unsigned), deny...)
}

// TestSignetKeylessImageValidatingPolicyTUF: Kyverno's ImageValidatingPolicy reads the
// trust root of every keyless check from a TUF repository (public Sigstore's unless the
// attestor names another). A private Sigstore's repository (ocitest.TUFRepository, the test
// CA as Fulcio, on 127.0.0.1) named in spec.sigstore.tuf lets it verify offline: the
// trusted workflow identity is admitted; other subjects, issuers and CAs and unsigned
// images are denied; a TUF root that cannot be read keeps the last good policy. The
// deployment is the suite's (suiteSigstore: Kyverno has one TUF client per process).
func TestSignetKeylessImageValidatingPolicyTUF(t *testing.T) {
	t.Parallel()
	s := newScenario(t, 5*time.Minute)
	const name, ns, org, cm = "keyless-ivp", "keyless-ivp", "keyless-ivp", "keyless-ivp-tuf"
	s.namespaces(ns)
	p := suiteSigstore(t)
	ca, repo, otherCA := p.ca, p.tuf, mustCA(t, "other fulcio")
	good := ocitest.Identity{Issuer: ghIssuer, Subject: ghSubject}
	signed := s.pushKeyless(s.reg, org+"/app", ca, good)
	otherSubject := s.pushKeyless(s.reg, org+"/app", ca, ocitest.Identity{Issuer: ghIssuer, Subject: "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main"})
	otherIssuer := s.pushKeyless(s.reg, org+"/app", ca, ocitest.Identity{Issuer: "https://accounts.google.com", Subject: ghSubject})
	otherRoot := s.pushKeyless(s.reg, org+"/app", otherCA, good)
	unsigned := s.push(s.reg, org+"/app")

	tufCM := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cm, Namespace: trustNS}, Data: map[string]string{"root.json": string(repo.RootJSON)}}
	if err := s.client.Create(s.ctx, tufCM); err != nil {
		t.Fatal(err)
	}
	tr := s.keylessRegistry(name, org, trustv1alpha1.EngineImageValidatingPolicy, ns, cm)
	tr.Spec.Sigstore.FulcioCertificates = nil // the trust root comes from the repository
	tr.Spec.Sigstore.TUF = &trustv1alpha1.TUFTrust{Mirror: repo.Mirror, Root: trustv1alpha1.TrustMaterialReference{ConfigMapName: cm, Key: "root.json"}}
	s.create(tr)
	s.waitReady(name, "ImageValidatingPolicy")
	pol, err := getIVP(s, name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pol, "mirror: "+repo.Mirror) || strings.Contains(pol, "roots:") {
		t.Fatalf("the ImageValidatingPolicy does not name the TUF mirror (or names roots):\n%s", pol)
	}
	s.waitEnforced(newPod(ns, "probe", unsigned))

	s.admitted("trusted workflow identity, trust root from the private TUF repository", newPod(ns, "trusted", signed))
	deny := signatureDenial("ImageValidatingPolicy", name)
	s.denied("another subject", newPod(ns, "other-subject", otherSubject), deny...)
	s.denied("another issuer", newPod(ns, "other-issuer", otherIssuer), deny...)
	s.denied("a certificate from a CA the trust root does not name", newPod(ns, "other-ca", otherRoot), deny...)
	s.denied("unsigned", newPod(ns, "unsigned", unsigned), deny...)

	// A TUF root that cannot be read keeps the last good policy (fail closed).
	if err := s.client.Delete(s.ctx, tufCM); err != nil {
		t.Fatal(err)
	}
	s.waitFor("KeysResolved False after the TUF root ConfigMap was deleted", func() (bool, error) {
		c := meta.FindStatusCondition(s.get(name).Status.Conditions, trustv1alpha1.ConditionKeysResolved)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == trustv1alpha1.ReasonSecretNotFound &&
			strings.Contains(c.Message, "ConfigMap "+trustNS+"/"+cm), nil
	})
	s.admitted("the trusted identity with the TUF root gone (last good policy)", newPod(ns, "last-good", signed))
	s.denied("unsigned with the TUF root gone", newPod(ns, "last-good-unsigned", unsigned), deny...)
}

func getIVP(s *scenario, registry string) (string, error) {
	tr := s.get(registry)
	if tr.Status.Policy == nil {
		return "", fmt.Errorf("no policy in status")
	}
	return s.policyYAML(s.ctx, policyGVK(tr.Status.Policy.Kind), tr.Status.Policy.Name), nil
}

// dockerConfigSecret is a kubernetes.io/dockerconfigjson Secret for one registry host, as
// `kubectl create secret docker-registry` writes it.
func dockerConfigSecret(name, host, user, password string) *corev1.Secret {
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{
		"username": user, "password": password, "auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
	}}})
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: trustNS},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}
}

// TestSignetPrivateRegistry: the registry requires basic auth. Without the credentials
// Secret the registry's condition says why and its Pods are denied (Kyverno cannot read
// the signatures); with it they are admitted; the copy in Kyverno's namespace follows the
// TrustedRegistries and leaves with the last one.
func TestSignetPrivateRegistry(t *testing.T) {
	t.Parallel()
	const user, password = "puller", "correct-horse"
	preg := ocitest.NewPrivateRegistryT(t, user, password)
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			s := newScenario(t, 4*time.Minute)
			name := "private-" + e.short
			ns, secret := name, name+"-pull"
			s.namespaces(ns)
			key := s.keyPair()
			s.keySecret(name+"-key", key)
			actx := ocitest.WithAuth(s.ctx, user, password)
			d, err := preg.PushRandomImage(actx, name+"/app")
			if err != nil {
				t.Fatal(err)
			}
			if err := ocitest.Sign(actx, d, key.Signer); err != nil {
				t.Fatal(err)
			}
			signed := d.String()
			if _, err := ocitest.Verify(s.ctx, d, key.PublicKeyPEM); err == nil {
				t.Fatal("the registry let an anonymous client read the signature")
			}

			tr := s.registry(name, name, e.engine, []string{ns}, keyRef("ci", name+"-key"))
			tr.Spec.Images = []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern(preg.Host() + "/" + name + "/*")}
			tr.Spec.Credentials = &trustv1alpha1.RegistryCredentials{SecretName: secret}
			s.create(tr)
			s.waitReady(name, e.kind)
			s.waitFor("CredentialsSynced False/CredentialsSecretNotFound", func() (bool, error) {
				c := meta.FindStatusCondition(s.get(name).Status.Conditions, trustv1alpha1.ConditionCredentialsSynced)
				return c != nil && c.Status == metav1.ConditionFalse && c.Reason == trustv1alpha1.ReasonCredentialsSecretNotFound, nil
			})
			c := meta.FindStatusCondition(s.get(name).Status.Conditions, trustv1alpha1.ConditionCredentialsSynced)
			t.Logf("without the Secret: %s %s: %s", c.Status, c.Reason, c.Message)
			s.waitEnforced(newPod(ns, "probe", signed))
			// Kyverno's registry client answers 401: the ClusterPolicy's rule fails, the
			// ImageValidatingPolicy fails to evaluate; both deny (failurePolicy Fail)
			s.denied("signed, without credentials", newPod(ns, "no-credentials", signed), sharedPolicyPrefix(e.kind), "UNAUTHORIZED")

			if err := s.client.Create(s.ctx, dockerConfigSecret(secret, preg.Host(), user, password)); err != nil {
				t.Fatal(err)
			}
			s.waitFor("CredentialsSynced True", func() (bool, error) {
				c := meta.FindStatusCondition(s.get(name).Status.Conditions, trustv1alpha1.ConditionCredentialsSynced)
				return c != nil && c.Status == metav1.ConditionTrue, nil
			})
			t0 := time.Now()
			s.waitFor("the signed image admitted with credentials", func() (bool, error) {
				return s.createPod(newPod(ns, "creds-probe", signed), true) == nil, nil
			})
			t.Logf("admitted %v after the credentials were synced", time.Since(t0).Round(time.Millisecond))
			s.admitted("signed, with credentials", newPod(ns, "with-credentials", signed))
			unsigned, err := preg.PushRandomImage(actx, name+"/app")
			if err != nil {
				t.Fatal(err)
			}
			s.denied("unsigned, with credentials", newPod(ns, "unsigned", unsigned.String()), signatureDenial(e.kind, name)...)

			// The copy holds the credentials and nothing else of Signet's; it is never
			// in the trust namespace's cache of the operator (not watched).
			copySecret := &corev1.Secret{}
			if err := s.client.Get(s.ctx, client.ObjectKey{Namespace: localstack.KyvernoNamespace, Name: trustv1alpha1.CredentialsCopyName}, copySecret); err != nil {
				t.Fatal(err)
			}
			if copySecret.Type != corev1.SecretTypeDockerConfigJson || !strings.Contains(string(copySecret.Data[corev1.DockerConfigJsonKey]), preg.Host()) {
				t.Errorf("copy in Kyverno's namespace: type %s, data keys %d", copySecret.Type, len(copySecret.Data))
			}

			if err := s.client.Delete(s.ctx, s.get(name)); err != nil {
				t.Fatal(err)
			}
		})
	}
	s := newScenario(t, time.Minute)
	s.waitFor("the credentials copy deleted with the last TrustedRegistry naming credentials", func() (bool, error) {
		err := s.client.Get(s.ctx, client.ObjectKey{Namespace: localstack.KyvernoNamespace, Name: trustv1alpha1.CredentialsCopyName}, &corev1.Secret{})
		return apierrors.IsNotFound(err), nil
	})
}
