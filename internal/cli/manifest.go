package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/signet-operator/signet/api/v1alpha1"
	"github.com/signet-operator/signet/internal/cli/crd"
	"github.com/signet-operator/signet/internal/cli/crdvalidate"
)

// document is one YAML document (or one item of a List) of an input.
type document struct {
	loc string         // "file.yaml:12" (line where the document starts), "file.yaml:12 item 2"
	obj map[string]any // nil when the document is empty
	err error          // the document does not parse
}

func (d document) describe() string {
	kind, _ := d.obj["kind"].(string)
	name := ""
	if md, ok := d.obj["metadata"].(map[string]any); ok {
		name, _ = md["name"].(string)
	}
	if kind == "" {
		kind = "object"
	}
	return fmt.Sprintf("%s %q", kind, name)
}

var docSeparator = regexp.MustCompile(`^---(\s.*)?$`)

// splitDocuments splits a YAML stream at "---" lines, keeping the line number (1-based)
// where each document starts.
func splitDocuments(data []byte) (texts [][]byte, lines []int) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var cur bytes.Buffer
	start := 1
	for i, line := range strings.SplitAfter(string(data), "\n") {
		if docSeparator.MatchString(strings.TrimRight(line, "\r\n")) {
			texts, lines = append(texts, bytes.Clone(cur.Bytes())), append(lines, start)
			cur.Reset()
			start = i + 2
			continue
		}
		cur.WriteString(line)
	}
	texts, lines = append(texts, cur.Bytes()), append(lines, start)
	return texts, lines
}

// decode parses one YAML (or JSON) document as the apiserver decodes JSON: duplicate keys
// are an error and whole numbers are int64.
func decode(text []byte) (map[string]any, error) {
	js, err := yaml.YAMLToJSONStrict(text)
	if err != nil {
		return nil, err
	}
	js = bytes.TrimSpace(js)
	if len(js) == 0 || string(js) == "null" {
		return nil, nil
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(js, &obj); err != nil {
		return nil, fmt.Errorf("not a YAML mapping: %w", err)
	}
	return obj, nil
}

// readDocuments reads the documents of every input: "-" is standard input, a directory is
// walked for *.yaml, *.yml and *.json files.
func readDocuments(inputs []string, stdin io.Reader) ([]document, error) {
	var docs []document
	for _, in := range inputs {
		files := []string{in}
		if in != "-" {
			st, err := os.Stat(in)
			if err != nil {
				return nil, err
			}
			if st.IsDir() {
				if files, err = manifestFiles(in); err != nil {
					return nil, err
				}
			}
		}
		for _, f := range files {
			var data []byte
			var err error
			name := f
			if f == "-" {
				name = "<stdin>"
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(f)
			}
			if err != nil {
				return nil, err
			}
			texts, lines := splitDocuments(data)
			for i, text := range texts {
				loc := fmt.Sprintf("%s:%d", name, lines[i])
				obj, err := decode(text)
				if err != nil {
					docs = append(docs, document{loc: loc, err: err})
					continue
				}
				if obj == nil {
					continue
				}
				if items, ok := obj["items"].([]any); ok && obj["kind"] == "List" {
					for j, it := range items {
						m, ok := it.(map[string]any)
						if !ok {
							docs = append(docs, document{loc: fmt.Sprintf("%s item %d", loc, j+1), err: errors.New("an item of the List is not an object")})
							continue
						}
						docs = append(docs, document{loc: fmt.Sprintf("%s item %d", loc, j+1), obj: m})
					}
					continue
				}
				docs = append(docs, document{loc: loc, obj: obj})
			}
		}
	}
	return docs, nil
}

func manifestFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

var (
	validatorOnce sync.Once
	validatorVal  *crdvalidate.Validator
	validatorErr  error
)

// trValidator is the apiserver emulation for the embedded TrustedRegistry CRD.
func trValidator() (*crdvalidate.Validator, error) {
	validatorOnce.Do(func() { validatorVal, validatorErr = crdvalidate.New(crd.TrustedRegistryYAML) })
	return validatorVal, validatorErr
}

// admitted is a TrustedRegistry as the apiserver would store it.
type admitted struct {
	doc      document
	registry *v1alpha1.TrustedRegistry
	hasUID   bool
}

// admit runs the apiserver's create path and converts the stored form. problems lists the
// apiserver's messages when it would refuse the object.
func admit(ctx context.Context, v *crdvalidate.Validator, d document) (*admitted, []string, error) {
	res := v.Create(ctx, d.obj)
	if !res.OK() {
		return nil, res.Messages(), nil
	}
	tr := &v1alpha1.TrustedRegistry{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(res.Object, tr); err != nil {
		return nil, nil, fmt.Errorf("%s: converting the TrustedRegistry: %w", d.loc, err)
	}
	return &admitted{doc: d, registry: tr, hasUID: tr.UID != ""}, nil, nil
}

// selectRegistry reads the inputs and returns the one TrustedRegistry they hold (or the one
// named name). Other kinds of objects are skipped.
func selectRegistry(ctx context.Context, inputs []string, name string, s Streams) (*admitted, int) {
	all, code := admitRegistries(ctx, inputs, name, true, s)
	if all == nil {
		return nil, code
	}
	return all[0], 0
}

// admitRegistries reads the TrustedRegistries of the inputs (only the one named name, when
// not empty), defaulted and validated as the apiserver would store them. With one, more
// than one is a usage error (choose with --name).
func admitRegistries(ctx context.Context, inputs []string, name string, one bool, s Streams) ([]*admitted, int) {
	docs, err := readDocuments(inputs, s.In)
	if err != nil {
		fmt.Fprintf(s.Err, "signet: %v\n", err)
		return nil, ExitUsage
	}
	v, err := trValidator()
	if err != nil {
		fmt.Fprintf(s.Err, "signet: %v\n", err)
		return nil, ExitUsage
	}
	var found []document
	for _, d := range docs {
		if d.err != nil {
			fmt.Fprintf(s.Err, "%s: %v\n", d.loc, d.err)
			return nil, ExitUsage
		}
		if !v.Handles(d.obj) {
			continue
		}
		if name != "" {
			if md, _ := d.obj["metadata"].(map[string]any); md == nil || md["name"] != name {
				continue
			}
		}
		found = append(found, d)
	}
	switch {
	case len(found) == 0 && name != "":
		fmt.Fprintf(s.Err, "signet: no TrustedRegistry named %q in %s\n", name, strings.Join(inputs, ", "))
		return nil, ExitUsage
	case len(found) == 0:
		fmt.Fprintf(s.Err, "signet: no TrustedRegistry in %s\n", strings.Join(inputs, ", "))
		return nil, ExitUsage
	case len(found) > 1 && one:
		var locs []string
		for _, d := range found {
			locs = append(locs, d.loc+" "+d.describe())
		}
		fmt.Fprintf(s.Err, "signet: %d TrustedRegistries found (%s); choose one with --name\n", len(found), strings.Join(locs, ", "))
		return nil, ExitUsage
	}
	var out []*admitted
	refused := false
	for _, d := range found {
		a, problems, err := admit(ctx, v, d)
		if err != nil {
			fmt.Fprintf(s.Err, "signet: %v\n", err)
			return nil, ExitUsage
		}
		for _, p := range problems {
			fmt.Fprintf(s.Err, "%s: %s: %s\n", d.loc, d.describe(), p)
		}
		if len(problems) > 0 {
			refused = true
			continue
		}
		out = append(out, a)
	}
	if refused {
		fmt.Fprintln(s.Err, "signet: the apiserver would refuse this TrustedRegistry (see signet lint)")
		return nil, ExitFailed
	}
	return out, 0
}
