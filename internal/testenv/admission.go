package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustv1alpha1 "github.com/signet-operator/signet/api/v1alpha1"
)

// AdmissionObjects are the objects of config/admission as kustomize builds them (the
// MutatingAdmissionPolicy that adds Signet's finalizer at creation, and its binding), built
// with the kubectl of the assets directory.
func AdmissionObjects() ([]*unstructured.Unstructured, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(assets, "kubectl"), "kustomize", filepath.Join(root, "config", "admission"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("testenv: kubectl kustomize config/admission: %w\n%s", err, stderr.Bytes())
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(&stdout, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("testenv: decoding config/admission: %w", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// InstallAdmission applies config/admission to a running control plane and waits until the
// apiserver enforces it: a server-side dry-run create of a TrustedRegistry comes back with
// finalizer. The apiserver loads admission policies from an informer, so the objects being
// stored does not yet mean that the next create is mutated.
func InstallAdmission(ctx context.Context, cfg *rest.Config, finalizer string) error {
	objs, err := AdmissionObjects()
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := c.Patch(ctx, o, client.Apply, client.FieldOwner("signet-install"), client.ForceOwnership); err != nil {
			return fmt.Errorf("testenv: applying %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		probe := &trustv1alpha1.TrustedRegistry{
			ObjectMeta: metav1.ObjectMeta{Name: "admission-probe"},
			Spec: trustv1alpha1.TrustedRegistrySpec{
				Images:     []trustv1alpha1.ImagePattern{"probe.invalid/*"},
				Namespaces: trustv1alpha1.NamespaceSelection{Names: []string{"probe"}},
				Keyless:    []trustv1alpha1.KeylessIdentity{{Name: "ci", Issuer: "https://probe.invalid", Subject: "probe"}},
			},
		}
		err := c.Create(ctx, probe, client.DryRunAll)
		if err == nil && slices.Contains(probe.Finalizers, finalizer) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: config/admission installed, but a new TrustedRegistry still lacks %s after 30 s (dry run: %v)", finalizer, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
