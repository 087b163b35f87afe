package localstack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// FieldManager is the server-side apply field owner of objects the stack creates.
const FieldManager = "signet-localstack"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs server-side applies every CustomResourceDefinition found in the YAML files
// of dirs (not recursive) and waits until all are Established. Server-side apply is
// required: some of Kyverno's CRDs are too large for client-side apply's annotation.
// It returns the number of CRDs installed.
func (s *Stack) InstallCRDs(ctx context.Context, dirs ...string) (int, error) {
	var crds []*unstructured.Unstructured
	for _, dir := range dirs {
		objs, err := readCRDs(dir)
		if err != nil {
			return 0, err
		}
		crds = append(crds, objs...)
	}
	// Apply concurrently: the apiserver spends most of the time per CRD building its
	// OpenAPI and storage, which overlaps well.
	sem := make(chan struct{}, 4)
	errs := make([]error, len(crds))
	var wg sync.WaitGroup
	for i, crd := range crds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = s.applyCRD(ctx, crd)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	pending := map[string]bool{}
	for _, crd := range crds {
		pending[crd.GetName()] = true
	}
	err := waitUntil(ctx, fmt.Sprintf("%d CRDs Established", len(crds)), pollInterval, s.controlPlaneProcs(), func(ctx context.Context) (bool, error) {
		list, err := s.dyn.Resource(crdGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			if conditionTrue(&list.Items[i], "Established") {
				delete(pending, list.Items[i].GetName())
			}
		}
		if len(pending) > 0 {
			return false, fmt.Errorf("not yet Established: %s", strings.Join(sortedKeys(pending), ", "))
		}
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	return len(crds), nil
}

func (s *Stack) controlPlaneProcs() []*process {
	var ps []*process
	for _, name := range []string{ProcEtcd, ProcAPIServer} {
		if p := s.proc(name); p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (s *Stack) applyCRD(ctx context.Context, crd *unstructured.Unstructured) error {
	data, err := crd.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	_, err = s.dyn.Resource(crdGVR).Patch(ctx, crd.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
	if err != nil {
		return fmt.Errorf("localstack: applying CRD %s: %w", crd.GetName(), err)
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readCRDs returns the CustomResourceDefinitions in the .yaml/.yml/.json files of dir.
func readCRDs(dir string) ([]*unstructured.Unstructured, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("localstack: reading CRD directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	var out []*unstructured.Unstructured
	for _, name := range names {
		path := filepath.Join(dir, name)
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		docs, err := splitYAML(f)
		_ = f.Close() // read-only: nothing to flush
		if err != nil {
			return nil, fmt.Errorf("localstack: %s: %w", path, err)
		}
		for _, doc := range docs {
			var u unstructured.Unstructured
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				return nil, fmt.Errorf("localstack: %s: %w", path, err)
			}
			if u.GetKind() == "CustomResourceDefinition" {
				out = append(out, &u)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("localstack: no CustomResourceDefinition in %s", dir)
	}
	return out, nil
}

func splitYAML(r io.Reader) ([][]byte, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// conditionTrue reports whether obj has status.conditions[type=t] with status "True".
func conditionTrue(obj *unstructured.Unstructured, t string) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == t && m["status"] == "True" {
			return true
		}
	}
	return false
}
