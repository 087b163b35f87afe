//go:build e2e

package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/ocitest"
)

// privateSigstore is one private Sigstore deployment for the whole suite: a CA playing
// Fulcio, a Rekor log key, and the TUF repository that distributes both. One, because
// Kyverno keeps a single TUF client per process (README.md, "Keyless signatures with your
// own Sigstore"): every keyless or logged ImageValidatingPolicy check re-reads the first
// mirror it was given, so a repository closed by one test would fail the others.
type privateSigstore struct {
	ca    *ocitest.CA
	rekor *ocitest.Rekor
	tuf   *ocitest.TUFRepository
}

var (
	sigstoreOnce sync.Once
	sigstoreFx   *privateSigstore
	sigstoreErr  error
)

func suiteSigstore(t *testing.T) *privateSigstore {
	t.Helper()
	sigstoreOnce.Do(func() {
		p := &privateSigstore{}
		if p.ca, sigstoreErr = ocitest.NewCA("suite fulcio"); sigstoreErr != nil {
			return
		}
		if p.rekor, sigstoreErr = ocitest.NewRekor(); sigstoreErr != nil {
			return
		}
		if p.tuf, sigstoreErr = ocitest.NewTUFRepository(p.ca, p.rekor); sigstoreErr != nil {
			return
		}
		sigstoreFx = p
		go func() { <-fxDone; p.tuf.Close() }() // after every test, with the stack
	})
	if sigstoreErr != nil {
		t.Fatalf("private Sigstore: %v", sigstoreErr)
	}
	return sigstoreFx
}

// trustConfigMap holds the suite Sigstore's TUF root and Rekor key in the trust namespace.
func (s *scenario) trustConfigMap(name string, p *privateSigstore) {
	s.t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: trustNS}, Data: map[string]string{
		"root.json": string(p.tuf.RootJSON), "rekor.pub": string(p.rekor.PublicKeyPEM),
	}}
	if err := s.client.Create(s.ctx, cm); err != nil {
		s.t.Fatal(err)
	}
}

// TestSignetPrivateTransparencyLog: a registry signed with keys whose signatures and
// attestations must be recorded in the deployment's own Rekor (transparencyLog not ignored,
// spec.sigstore naming its TUF repository and log key). Signatures and attestations that
// carry the log's bundle are admitted; unlogged ones, and ones logged by another log, are
// denied. With the ImageValidatingPolicy engine this is how attestations verify at all
// (Kyverno 1.19 accepts them only with a verified log entry), for both engines it is how a
// private log is enforced.
func TestSignetPrivateTransparencyLog(t *testing.T) {
	t.Parallel()
	p := suiteSigstore(t)
	otherLog, err := ocitest.NewRekor()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range signetEngines {
		t.Run(e.kind, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, 6*time.Minute)
			name := "tlog-" + e.short
			ns, org, cm := name, name, name+"-sigstore"
			s.namespaces(ns)
			ci := s.keyPair()
			s.keySecret(name+"-ci", ci)
			s.trustConfigMap(cm, p)

			build := slsaPredicate(trustedBuild)
			image := func(sign, attest *ocitest.Rekor, attested bool) string {
				t.Helper()
				d, err := s.reg.PushRandomImage(s.ctx, org+"/app")
				if err != nil {
					t.Fatal(err)
				}
				var opts []ocitest.SignOption
				if sign != nil {
					opts = append(opts, ocitest.WithRekor(sign))
				}
				if err := ocitest.Sign(s.ctx, d, ci.Signer, opts...); err != nil {
					t.Fatal(err)
				}
				if attested {
					if attest != nil {
						err = ocitest.AttestWithRekor(s.ctx, d, ci.Signer, attest, slsaV1URI, build)
					} else {
						err = ocitest.Attest(s.ctx, d, ci.Signer, slsaV1URI, build)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				return d.String()
			}
			logged := image(p.rekor, p.rekor, true)
			unloggedSig := image(nil, p.rekor, true)
			unloggedAtt := image(p.rekor, nil, true)
			otherLogSig := image(otherLog, p.rekor, true)
			otherLogAtt := image(p.rekor, otherLog, true)
			notAttested := image(p.rekor, nil, false)

			tr := s.registry(name, org, e.engine, []string{ns}, keyRef("ci", name+"-ci"))
			tr.Spec.TransparencyLog = trustv1alpha1.TransparencyLog{Ignore: ptr.To(false)}
			tr.Spec.Attestations = []trustv1alpha1.AttestationRequirement{{Type: "slsaprovenance1"}}
			tr.Spec.Sigstore = &trustv1alpha1.SigstoreTrust{
				TUF: &trustv1alpha1.TUFTrust{Mirror: p.tuf.Mirror, Root: trustv1alpha1.TrustMaterialReference{ConfigMapName: cm, Key: "root.json"}},
				Rekor: &trustv1alpha1.RekorTrust{URL: ocitest.RekorURL,
					PublicKey: &trustv1alpha1.TrustMaterialReference{ConfigMapName: cm, Key: "rekor.pub"}},
			}
			s.create(tr)
			s.waitReady(name, e.kind)
			pol, err := getIVP(s, name)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(pol, ocitest.RekorURL) {
				t.Fatalf("the %s does not name the private Rekor:\n%s", e.kind, pol)
			}
			s.waitEnforced(newPod(ns, "probe", unloggedSig))

			s.admitted("signature and attestation recorded in the private log", newPod(ns, "logged", logged))
			sigDeny, attDeny := signatureDenial(e.kind, name), attestationDenial(e.kind, name, slsaV1URI)
			s.denied("signature not recorded in the log", newPod(ns, "unlogged-sig", unloggedSig), sigDeny...)
			s.denied("signature recorded by another log", newPod(ns, "other-log-sig", otherLogSig), sigDeny...)
			s.denied("attestation not recorded in the log", newPod(ns, "unlogged-att", unloggedAtt), attDeny...)
			s.denied("attestation recorded by another log", newPod(ns, "other-log-att", otherLogAtt), attDeny...)
			s.denied("logged signature, no attestation", newPod(ns, "not-attested", notAttested), attDeny...)
		})
	}
}
