package cli

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/keys"
	"github.com/signet-operator/signet/internal/render"
)

// placeholderUID stands in for the TrustedRegistry's UID when the manifest has none: the
// renderer needs one for the owner reference, which is then printed without it.
const placeholderUID = "00000000-0000-0000-0000-000000000000"

func loadKey(k keyArg) (*keys.PublicKey, error) {
	data, err := os.ReadFile(k.path)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", k.name, err)
	}
	pk, err := keys.ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("key %q (%s): %w", k.name, k.path, err)
	}
	return pk, nil
}

// buildRing returns the key ring the operator would hold for tr if every key in spec.keys
// resolved to the given files and had never changed (all Active), plus the given Retiring
// keys (a key being rotated out: in the cluster the operator tracks that itself). It is
// the ring passed to render.Render, in the operator's order (keys.Next's).
func buildRing(tr *v1alpha1.TrustedRegistry, active, retiring []keyArg) ([]render.Key, []string, error) {
	var notes []string
	given := map[string]*keys.PublicKey{}
	for _, k := range active {
		if _, dup := given[k.name]; dup {
			return nil, nil, fmt.Errorf("--key %s is given twice", k.name)
		}
		pk, err := loadKey(k)
		if err != nil {
			return nil, nil, err
		}
		given[k.name] = pk
	}
	inSpec := map[string]bool{}
	var desired []keys.Desired
	var missing []string
	for _, k := range tr.Spec.Keys {
		inSpec[k.Name] = true
		pk, ok := given[k.Name]
		if !ok {
			missing = append(missing, k.Name)
			continue
		}
		desired = append(desired, keys.Desired{Name: k.Name, Key: pk})
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("spec.keys lists %s without a public key: pass --key NAME=PATH for each (e.g. --key %s=cosign.pub)",
			quoteList(missing), missing[0])
	}
	var extra []string
	for n := range given {
		if !inSpec[n] {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, nil, fmt.Errorf("--key %s: not in spec.keys of TrustedRegistry %q (keys: %s); a key that left spec.keys is passed with --retiring-key",
			strings.Join(extra, ", "), tr.Name, quoteList(specKeyNames(tr)))
	}
	overlap := 168 * time.Hour
	if o := tr.Spec.Rotation.Overlap; o != nil {
		overlap = o.Duration
	}
	// a fixed time: with an empty previous ring every desired key is Active and no time is
	// recorded
	ring, _ := keys.Next(keys.Ring{}, desired, overlap, time.Unix(0, 0).UTC())
	accepted := map[string]bool{}
	for _, e := range ring.Entries {
		accepted[e.Fingerprint] = true
	}
	for _, k := range retiring {
		pk, err := loadKey(k)
		if err != nil {
			return nil, nil, err
		}
		if accepted[pk.Fingerprint] {
			notes = append(notes, fmt.Sprintf("--retiring-key %s: the same public key is in spec.keys, so it is Active, not Retiring", k.name))
			continue
		}
		accepted[pk.Fingerprint] = true
		ring.Entries = append(ring.Entries, keys.Entry{Name: k.name, Fingerprint: pk.Fingerprint, Algorithm: pk.Algorithm, PEM: pk.PEM, State: v1alpha1.KeyRetiring})
	}
	out := make([]render.Key, 0, len(ring.Entries))
	for _, e := range ring.Entries {
		out = append(out, render.Key{Name: e.Name, Fingerprint: e.Fingerprint, PEM: e.PEM, State: e.State})
	}
	return out, notes, nil
}

func specKeyNames(tr *v1alpha1.TrustedRegistry) []string {
	var out []string
	for _, k := range tr.Spec.Keys {
		out = append(out, k.Name)
	}
	return out
}

func quoteList(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	q := make([]string, 0, len(ss))
	for _, s := range ss {
		q = append(q, fmt.Sprintf("%q", s))
	}
	return strings.Join(q, ", ")
}

// withoutOwnerUID removes the uid of the policy's owner reference (rendered with the
// placeholder UID) and recomputes the content hash over what is printed, exactly as
// render.Render computes it: SHA-256 of the JSON of the object without the hash annotation
// (and without an annotations map that only held it).
func withoutOwnerUID(obj map[string]any) error {
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		return errors.New("rendered policy has no metadata")
	}
	refs, _ := meta["ownerReferences"].([]any)
	for _, r := range refs {
		if m, ok := r.(map[string]any); ok {
			delete(m, "uid")
		}
	}
	return rehash(obj)
}

// rehash recomputes the content-hash annotation of a rendered policy.
func rehash(obj map[string]any) error {
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		return errors.New("rendered policy has no metadata")
	}
	ann, _ := meta["annotations"].(map[string]any)
	delete(ann, render.AnnotationHash)
	if len(ann) == 0 {
		delete(meta, "annotations")
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	if ann == nil {
		ann = map[string]any{}
	}
	ann[render.AnnotationHash] = "sha256:" + hex.EncodeToString(sum[:])
	meta["annotations"] = ann
	return nil
}

// resolveEngine picks the policy kind to render: spec.policy.engine when it names one,
// else the --engine flag, else ImageValidatingPolicy (what the operator applies for Auto
// when Kyverno >= 1.18 serves it).
func resolveEngine(spec v1alpha1.Engine, flagValue string) (v1alpha1.Engine, string, error) {
	var want v1alpha1.Engine
	switch flagValue {
	case "":
	case string(v1alpha1.EngineImageValidatingPolicy), string(v1alpha1.EngineClusterPolicy):
		want = v1alpha1.Engine(flagValue)
	default:
		return "", "", fmt.Errorf("--engine must be ImageValidatingPolicy or ClusterPolicy, not %q", flagValue)
	}
	switch spec {
	case v1alpha1.EngineImageValidatingPolicy, v1alpha1.EngineClusterPolicy:
		if want != "" && want != spec {
			return "", "", fmt.Errorf("--engine %s contradicts spec.policy.engine %s, which the operator follows", want, spec)
		}
		return spec, "", nil
	}
	if want != "" {
		return want, "", nil
	}
	return v1alpha1.EngineImageValidatingPolicy,
		"spec.policy.engine is Auto: rendering an ImageValidatingPolicy, what the operator applies when Kyverno >= 1.18 serves it (use --engine ClusterPolicy for older Kyverno)", nil
}

// loadCertificates reads a PEM bundle: self-signed certificates are roots, the others
// intermediates.
func loadCertificates(path string) (roots, intermediates *x509.CertPool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	roots, intermediates = x509.NewCertPool(), x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		n++
		if bytes.Equal(cert.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(cert) == nil {
			roots.AddCert(cert)
		} else {
			intermediates.AddCert(cert)
		}
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return roots, intermediates, nil
}
