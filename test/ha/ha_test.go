// Package ha tests Signet's high availability with the real binary: several operator
// processes elect a leader through a Lease on a real kube-apiserver (envtest), each running
// with the RBAC of config/default (it impersonates the operator's ServiceAccount), while the
// apiserver's audit log records every request they make.
//
//	go test ./test/ha/ -count=1 -v
package ha

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/operator"
	"github.com/signet-operator/signet/internal/render"
	"github.com/signet-operator/signet/internal/testenv"
)

// Names from config/default.
const (
	operatorNamespace = "signet-system"
	serviceAccount    = "system:serviceaccount:signet-system:signet-controller-manager"
)

// Short leader-election timings, so that the test takes about a minute. The ratios are the
// defaults' (15s/10s/2s).
const (
	leaseDuration = 6 * time.Second
	renewDeadline = 4 * time.Second
	retryPeriod   = 1 * time.Second
	// overlap of the rotated key: long enough to kill the leader and wait out its Lease.
	overlap = 25 * time.Second
)

var ivpGVK = schema.GroupVersionKind{Group: "policies.kyverno.io", Version: "v1", Kind: "ImageValidatingPolicy"}

// TestLeaderFailover runs two replicas of the operator binary. The leader is killed with
// SIGKILL (a crash: the Lease is not released) while a rotated key is in its overlap; the
// standby must take over once the Lease expires and retire the old key at retiresAt, not
// earlier and not more than a few seconds later. A third replica then joins as standby and
// the leader is stopped with SIGTERM (a rollout or drain): it releases the Lease, so the
// standby takes over without waiting for the Lease to expire. From the audit log: no replica
// writes anything (policies, status, ConfigMaps, Events, the Lease) while it is not the leader,
// and no request of any replica is refused by the RBAC of config/default.
func TestLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane (bin/k8s) and builds the operator")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "signet")
	if out, err := runCmd(root, nil, "go", "build", "-o", bin, "."); err != nil {
		t.Fatalf("building the operator: %v\n%s", err, out)
	}

	// The audit log records every request of the replicas' users (and nothing else).
	auditLog := filepath.Join(tmp, "audit.log")
	policy := filepath.Join(tmp, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := testenv.New(testenv.WithKyvernoCRDs(),
		testenv.WithAPIServerFlag("audit-policy-file", policy),
		testenv.WithAPIServerFlag("audit-log-path", auditLog))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("stopping the control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Install config/default as `make deploy` does (the Deployment runs no pods here: envtest
	// has no controllers; the replicas below stand in for its pods).
	admin := kubeconfigFor(t, env, cfg, tmp, "admin", "")
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(root, nil, filepath.Join(assets, "kubectl"), "--kubeconfig", admin,
		"apply", "--server-side", "--force-conflicts", "-k", "config/default"); err != nil {
		t.Fatalf("kubectl apply -k config/default: %v\n%s", err, out)
	}

	// The apiserver authorizes from an informer: wait until it knows the new bindings, so that
	// a refused request below is a gap in the RBAC, not a race with the install.
	eventually(t, 10*time.Second, "the operator's RBAC in effect", func() error {
		for _, ra := range []authorizationv1.ResourceAttributes{
			{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: operatorNamespace, Name: operator.LeaderElectionID},
			{Group: "trust.signet.dev", Resource: "trustedregistries", Verb: "watch"},
			{Resource: "secrets", Verb: "watch", Namespace: operatorNamespace},
		} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: serviceAccount, ResourceAttributes: &ra}}
			if err := c.Create(ctx, sar); err != nil {
				return err
			}
			if !sar.Status.Allowed {
				return fmt.Errorf("%s %s not allowed yet", ra.Verb, ra.Resource)
			}
		}
		return nil
	})

	oldPub, newPub, otherPub := newKeyPEM(t), newKeyPEM(t), newKeyPEM(t)
	mustCreate(t, c, keySecret("ha-key", oldPub), registry("ha", "ha-key"))

	r1 := startReplica(t, env, cfg, bin, tmp, "replica-1")
	holder1 := waitLeader(t, c, "", 30*time.Second)
	acq1 := lease(t, c).Spec.AcquireTime.Time
	t.Logf("replica-1 leads as %s", holder1)
	waitKeys(t, c, 30*time.Second, "the first key in the policy", []string{oldPub}, nil)

	r2 := startReplica(t, env, cfg, bin, tmp, "replica-2")
	waitCandidate(t, auditLog, "replica-2")

	// Rotate: the Secret now holds the new key; the old one retires after the overlap.
	rotateSecret(t, c, "ha-key", newPub)
	waitKeys(t, c, 20*time.Second, "both keys in the policy", []string{oldPub, newPub}, nil)
	retiresAt := retiringAt(t, c, "ha")
	if left := time.Until(retiresAt); left < leaseDuration+5*time.Second {
		t.Fatalf("only %s of the overlap left: the failover would not happen mid-rotation", left)
	}

	// Crash the leader mid-rotation.
	killed := time.Now()
	r1.kill(t)
	holder2 := waitLeader(t, c, holder1, leaseDuration+15*time.Second)
	acq2 := lease(t, c).Spec.AcquireTime.Time
	crashTakeover := acq2.Sub(killed)
	t.Logf("replica-1 killed %s before retiresAt; replica-2 (%s) took over %s later",
		retiresAt.Sub(killed).Round(10*time.Millisecond), holder2, crashTakeover.Round(10*time.Millisecond))
	// The Lease was not released: the standby waited for it to expire (the leader renews
	// every retryPeriod). A standby polls every retryPeriod to 2.2×retryPeriod (client-go's
	// jitter), so it notices the last renewal and then the expiry up to one poll late each.
	if min, max := leaseDuration-2*retryPeriod, leaseDuration+5*retryPeriod; crashTakeover < min || crashTakeover > max {
		t.Errorf("takeover after a crash took %s, want between %s and %s (lease duration %s)", crashTakeover, min, max, leaseDuration)
	}

	// The new leader retires the old key at retiresAt: never before, at most a few seconds after.
	removed := watchRetirement(t, c, oldPub, newPub, retiresAt, 10*time.Second)
	lateness := removed.Sub(retiresAt)
	t.Logf("the old key left the policy %s after retiresAt (%s)", lateness.Round(10*time.Millisecond), retiresAt.Format(time.RFC3339))
	if lateness > 3*time.Second {
		t.Errorf("the old key left the policy %s after retiresAt, want at most 3s", lateness)
	}
	eventually(t, 10*time.Second, "status: 1 active key", func() error {
		tr := &trustv1alpha1.TrustedRegistry{}
		if err := c.Get(ctx, client.ObjectKey{Name: "ha"}, tr); err != nil {
			return err
		}
		if tr.Status.KeySummary != "1 active" {
			return fmt.Errorf("keySummary %q", tr.Status.KeySummary)
		}
		return nil
	})

	// A new standby joins; the leader is stopped as a rollout or drain stops it.
	r3 := startReplica(t, env, cfg, bin, tmp, "replica-3")
	waitCandidate(t, auditLog, "replica-3")
	terminated := time.Now()
	r2.terminate(t)
	holder3 := waitLeader(t, c, holder2, leaseDuration+15*time.Second)
	acq3 := lease(t, c).Spec.AcquireTime.Time
	gracefulTakeover := acq3.Sub(terminated)
	t.Logf("replica-2 stopped (SIGTERM); replica-3 (%s) took over %s later", holder3, gracefulTakeover.Round(10*time.Millisecond))
	if err := r2.wait(30 * time.Second); err != nil {
		t.Errorf("replica-2 did not exit cleanly on SIGTERM: %v\n%s", err, r2.tail())
	}
	// Released, not expired: well before the lease duration.
	if gracefulTakeover >= leaseDuration-retryPeriod {
		t.Errorf("takeover after SIGTERM took %s: the Lease was not released (lease duration %s)", gracefulTakeover, leaseDuration)
	}

	// The third replica reconciles: a new registry's key reaches the policy.
	mustCreate(t, c, keySecret("ha2-key", otherPub), registry("ha2", "ha2-key"))
	waitKeys(t, c, 20*time.Second, "the new leader's first policy change", []string{newPub, otherPub}, []string{oldPub})

	// Only the leader of the moment wrote, and RBAC refused nothing.
	r3.terminate(t)
	if err := r3.wait(30 * time.Second); err != nil {
		t.Errorf("replica-3 did not exit cleanly on SIGTERM: %v\n%s", err, r3.tail())
	}
	events := readAudit(t, auditLog)
	terms := map[string][2]time.Time{
		"replica-1": {acq1, acq2},
		"replica-2": {acq2, acq3},
		"replica-3": {acq3, time.Now().Add(time.Hour)},
	}
	writes, kinds := map[string]int{}, map[string]int{}
	for _, e := range events {
		who := e.User.Username
		if e.ImpersonatedUser == nil || e.ImpersonatedUser.Username != serviceAccount {
			t.Errorf("%s %s by %s without impersonating the ServiceAccount", e.Verb, e.RequestURI, who)
		}
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			t.Errorf("RBAC refused %s %s to %s: %s", e.Verb, e.RequestURI, who, e.ResponseStatus.Message)
		}
		if !isWrite(e.Verb) {
			continue
		}
		writes[who]++
		if e.ObjectRef != nil {
			kinds[who+" "+e.Verb+" "+e.ObjectRef.Resource+subresource(e)]++
		}
		term, ok := terms[who]
		at := e.RequestReceivedTimestamp.Time
		if !ok || at.Before(term[0]) || !at.Before(term[1]) {
			t.Errorf("%s wrote while not the leader: %s %s at %s (its term: %s to %s)", who, e.Verb, e.RequestURI,
				at.Format(time.StampMicro), term[0].Format(time.StampMicro), term[1].Format(time.StampMicro))
		}
	}
	for _, r := range []string{"replica-1", "replica-2", "replica-3"} {
		if writes[r] == 0 {
			t.Errorf("no write by %s in the audit log: the check above proves nothing", r)
		}
	}
	t.Logf("audit: %d requests; writes by replica: %v; by verb and resource: %v", len(events), writes, kinds)
	t.Logf("takeover after crash (SIGKILL): %s; after SIGTERM (Lease released): %s; old key retired %s after retiresAt",
		crashTakeover.Round(10*time.Millisecond), gracefulTakeover.Round(10*time.Millisecond), lateness.Round(10*time.Millisecond))
}

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [replica-1, replica-2, replica-3]
- level: None
`

// --- replicas ------------------------------------------------------------------------

type replica struct {
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

// startReplica runs the operator binary as the operator's ServiceAccount, authenticated as
// its own user so that the audit log tells the replicas apart.
func startReplica(t *testing.T, env *envtest.Environment, cfg *rest.Config, bin, dir, name string) *replica {
	t.Helper()
	kubeconfig := kubeconfigFor(t, env, cfg, dir, name, serviceAccount)
	cmd := exec.Command(bin, "manager",
		"--leader-elect",
		"--leader-elect-lease-duration="+leaseDuration.String(),
		"--leader-elect-renew-deadline="+renewDeadline.String(),
		"--leader-elect-retry-period="+retryPeriod.String(),
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--graceful-shutdown-timeout=10s")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAMESPACE="+operatorNamespace)
	r := &replica{name: name, cmd: cmd, log: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-r.done:
			r.done <- err
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("--- %s log (tail) ---\n%s", name, r.tail())
		}
	})
	return r
}

// kill ends the replica as a crash would: no shutdown, no Lease release.
func (r *replica) kill(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-r.done
	r.done <- nil
}

// terminate sends SIGTERM, as the kubelet does when a pod is deleted.
func (r *replica) terminate(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

func (r *replica) wait(timeout time.Duration) error {
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %s", timeout)
	}
}

func (r *replica) tail() string {
	s := r.log.String()
	if len(s) > 6000 {
		s = "…" + s[len(s)-6000:]
	}
	return s
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// kubeconfigFor writes a kubeconfig for a new user of the test apiserver (in system:masters,
// which may impersonate) that impersonates as, unless as is empty.
func kubeconfigFor(t *testing.T, env *envtest.Environment, cfg *rest.Config, dir, user, as string) string {
	t.Helper()
	u, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = as
	}
	path := filepath.Join(dir, user+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// --- the Lease --------------------------------------------------------------------------

func lease(t *testing.T, c client.Client) *coordinationv1.Lease {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: operator.LeaderElectionID}, l); err != nil {
		t.Fatal(err)
	}
	return l
}

// waitLeader waits until the Lease has a holder other than previous and returns it.
func waitLeader(t *testing.T, c client.Client, previous string, timeout time.Duration) string {
	t.Helper()
	var holder string
	eventually(t, timeout, "a new leader", func() error {
		l := &coordinationv1.Lease{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: operator.LeaderElectionID}, l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" || *l.Spec.HolderIdentity == previous {
			return fmt.Errorf("holder %v", l.Spec.HolderIdentity)
		}
		if l.Spec.AcquireTime == nil {
			return fmt.Errorf("no acquireTime")
		}
		holder = *l.Spec.HolderIdentity
		return nil
	})
	return holder
}

// waitCandidate waits until a replica asks for the Lease. Its caches are synced by then:
// controller-runtime starts the election after the caches.
func waitCandidate(t *testing.T, auditLog, user string) {
	t.Helper()
	eventually(t, 30*time.Second, user+" asking for the Lease", func() error {
		for _, e := range readAudit(t, auditLog) {
			if e.User.Username == user && e.ObjectRef != nil && e.ObjectRef.Resource == "leases" {
				return nil
			}
		}
		return fmt.Errorf("no Lease request by %s yet", user)
	})
}

// --- audit log --------------------------------------------------------------------------

type auditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"responseStatus"`
	RequestReceivedTimestamp metav1.MicroTime `json:"requestReceivedTimestamp"`
}

// readAudit returns the completed requests in the audit log.
func readAudit(t *testing.T, path string) []auditEvent {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a line being written
		}
		if e.Stage == "ResponseComplete" || e.Stage == "Panic" {
			out = append(out, e)
		}
	}
	return out
}

func subresource(e auditEvent) string {
	if e.ObjectRef.Subresource == "" {
		return ""
	}
	return "/" + e.ObjectRef.Subresource
}

func isWrite(verb string) bool {
	return slices.Contains([]string{"create", "update", "patch", "delete", "deletecollection"}, verb)
}

// --- keys and policies ------------------------------------------------------------------

// policyKeys returns the public keys in all of Signet's ImageValidatingPolicies.
func policyKeys(c client.Client) (map[string]bool, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(ivpGVK.GroupVersion().WithKind(ivpGVK.Kind + "List"))
	if err := c.List(context.Background(), list, client.MatchingLabels{render.LabelManagedBy: "signet"}); err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		case string:
			for _, block := range strings.SplitAfter(x, "-----END PUBLIC KEY-----") {
				if i := strings.Index(block, "-----BEGIN PUBLIC KEY-----"); i >= 0 {
					keys[strings.TrimSpace(block[i:])] = true
				}
			}
		}
	}
	for _, p := range list.Items {
		walk(p.Object["spec"])
	}
	return keys, nil
}

// waitKeys waits until the policies hold every key of want and none of absent.
func waitKeys(t *testing.T, c client.Client, timeout time.Duration, what string, want, absent []string) {
	t.Helper()
	eventually(t, timeout, what, func() error {
		keys, err := policyKeys(c)
		if err != nil {
			return err
		}
		for i, k := range want {
			if !keys[strings.TrimSpace(k)] {
				return fmt.Errorf("key %d missing (%d keys)", i, len(keys))
			}
		}
		for i, k := range absent {
			if keys[strings.TrimSpace(k)] {
				return fmt.Errorf("key %d still there", i)
			}
		}
		return nil
	})
}

// watchRetirement polls the policies until the old key is gone and returns when that was
// first seen. Before retiresAt both keys must be there in every observation, and the new key
// always.
func watchRetirement(t *testing.T, c client.Client, oldPub, newPub string, retiresAt time.Time, after time.Duration) time.Time {
	t.Helper()
	deadline := retiresAt.Add(after)
	var lastSeen time.Time // start of the last list that still had the old key
	for time.Now().Before(deadline) {
		start := time.Now()
		keys, err := policyKeys(c)
		now := time.Now()
		if err != nil {
			t.Logf("listing policies: %v", err)
		} else {
			if !keys[strings.TrimSpace(newPub)] {
				t.Fatalf("the new key is missing from the policy at %s", now.Format(time.StampMilli))
			}
			if !keys[strings.TrimSpace(oldPub)] {
				// The key left after lastSeen and before this answer.
				if now.Before(retiresAt) {
					t.Fatalf("the old key left the policy %s before retiresAt", retiresAt.Sub(now))
				}
				t.Logf("old key last seen %s, gone %s (retiresAt %s)", lastSeen.Format(time.StampMilli),
					now.Format(time.StampMilli), retiresAt.Format(time.StampMilli))
				return now
			}
			lastSeen = start
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the old key is still in the policy %s after retiresAt", after)
	return time.Time{}
}

func retiringAt(t *testing.T, c client.Client, name string) time.Time {
	t.Helper()
	var at time.Time
	eventually(t, 20*time.Second, "a retiring key in the status", func() error {
		tr := &trustv1alpha1.TrustedRegistry{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, tr); err != nil {
			return err
		}
		for _, k := range tr.Status.Keys {
			if k.State == trustv1alpha1.KeyRetiring && k.RetiresAt != nil {
				at = k.RetiresAt.Time
				return nil
			}
		}
		return fmt.Errorf("keySummary %q", tr.Status.KeySummary)
	})
	return at
}

func newKeyPEM(t *testing.T) string {
	t.Helper()
	b, err := keys.StandInPEM()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func keySecret(name, pub string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: operatorNamespace},
		Data:       map[string][]byte{"cosign.pub": []byte(pub)},
	}
}

func rotateSecret(t *testing.T, c client.Client, name, pub string) {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"cosign.pub": []byte(pub)}
	if err := c.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func registry(name, secret string) *trustv1alpha1.TrustedRegistry {
	return &trustv1alpha1.TrustedRegistry{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: trustv1alpha1.TrustedRegistrySpec{
			Images:     []trustv1alpha1.ImagePattern{trustv1alpha1.ImagePattern("ghcr.io/" + name + "/*")},
			Namespaces: trustv1alpha1.NamespaceSelection{Names: []string{"production"}},
			Keys: []trustv1alpha1.PublicKey{{
				Name: "ci", SecretRef: trustv1alpha1.SecretKeyReference{Name: secret},
			}},
			Rotation: trustv1alpha1.Rotation{Overlap: &metav1.Duration{Duration: overlap}},
		},
	}
}

func mustCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
}

func runCmd(dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}
