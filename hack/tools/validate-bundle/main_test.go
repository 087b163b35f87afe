package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	bundleDir  = "../../../bundle"
	dockerfile = "../../../bundle.Dockerfile"
)

// TestCommittedBundle is what hack/validate-bundle.sh checks: no error, no warning.
func TestCommittedBundle(t *testing.T) {
	findings, err := Validate(bundleDir, dockerfile, "1.37")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Error(f)
	}
}

// copyBundle copies the committed bundle and its Dockerfile into a temporary directory.
func copyBundle(t *testing.T) (dir, df string) {
	t.Helper()
	tmp := t.TempDir()
	dir = filepath.Join(tmp, "bundle")
	err := filepath.Walk(bundleDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(bundleDir, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	df = filepath.Join(tmp, "bundle.Dockerfile")
	if err := os.WriteFile(df, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, df
}

// editCSV decodes the copied CSV, lets edit change it and writes it back.
func editCSV(t *testing.T, dir string, edit func(csv map[string]any)) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "manifests", "*.clusterserviceversion.yaml"))
	if len(files) != 1 {
		t.Fatalf("want one CSV, got %v", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var csv map[string]any
	if err := yaml.Unmarshal(data, &csv); err != nil {
		t.Fatal(err)
	}
	edit(csv)
	out, err := yaml.Marshal(csv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func m(v any) map[string]any { return v.(map[string]any) }

func installSpec(csv map[string]any) map[string]any {
	return m(m(m(csv["spec"])["install"])["spec"])
}

func container(csv map[string]any) map[string]any {
	d := m(installSpec(csv)["deployments"].([]any)[0])
	return m(m(m(m(d["spec"])["template"])["spec"])["containers"].([]any)[0])
}

// TestDetects proves that each validator actually runs: every broken copy must produce the
// expected finding.
func TestDetects(t *testing.T) {
	cases := []struct {
		name   string
		want   string // substring of one finding
		csv    func(csv map[string]any)
		mutate func(t *testing.T, dir, df string)
	}{
		{
			name: "AllNamespaces with Secrets in permissions",
			want: "install mode AllNamespaces is supported while permissions grant Secrets",
			csv: func(csv map[string]any) {
				for _, im := range m(csv["spec"])["installModes"].([]any) {
					if m(im)["type"] == "AllNamespaces" {
						m(im)["supported"] = true
					}
				}
			},
		},
		{
			name: "Secrets in clusterPermissions",
			want: "clusterPermissions grant secrets cluster-wide",
			csv: func(csv map[string]any) {
				cp := m(installSpec(csv)["clusterPermissions"].([]any)[0])
				cp["rules"] = append(cp["rules"].([]any), map[string]any{
					"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"get"},
				})
			},
		},
		{
			name: "wildcard verb",
			want: "use a wildcard",
			csv: func(csv map[string]any) {
				cp := m(installSpec(csv)["clusterPermissions"].([]any)[0])
				cp["rules"] = append(cp["rules"].([]any), map[string]any{
					"apiGroups": []any{"apps"}, "resources": []any{"deployments"}, "verbs": []any{"*"},
				})
			},
		},
		{
			name: "no icon (operatorhubv2)",
			want: "csv.Spec.Icon not specified",
			csv:  func(csv map[string]any) { delete(m(csv["spec"]), "icon") },
		},
		{
			name: "no minKubeVersion (operatorhubv2)",
			want: "minKubeVersion is not informed",
			csv:  func(csv map[string]any) { delete(m(csv["spec"]), "minKubeVersion") },
		},
		{
			name: "maintainer without email (operatorhubv2)",
			want: "Maintainers elements should contain both name and email",
			csv: func(csv map[string]any) {
				m(csv["spec"])["maintainers"] = []any{map[string]any{"name": "x"}}
			},
		},
		{
			name: "unknown category (categories)",
			want: `value "Gardening" is not in the set of standard categories`,
			csv:  func(csv map[string]any) { m(m(csv["metadata"])["annotations"])["categories"] = "Gardening" },
		},
		{
			name: "unknown capability (capabilities)",
			want: `"Everything" is not a valid capabilities level`,
			csv:  func(csv map[string]any) { m(m(csv["metadata"])["annotations"])["capabilities"] = "Everything" },
		},
		{
			name: "no resource requests (good-practices)",
			want: "unable to find the resource requests",
			csv:  func(csv map[string]any) { delete(container(csv), "resources") },
		},
		{
			name: "CSV name not <package>.v<semver> (good-practices)",
			want: "not following the",
			csv:  func(csv map[string]any) { m(csv["metadata"])["name"] = "signet" },
		},
		{
			name: "alm-examples kind not owned (csv)",
			want: "example must have a provided API",
			csv: func(csv map[string]any) {
				m(m(csv["metadata"])["annotations"])["alm-examples"] = `[{"apiVersion":"example.com/v1","kind":"Other","metadata":{"name":"x"}}]`
			},
		},
		{
			name: "misspelt CSV field (strict decoding)",
			want: "does not decode strictly",
			csv:  func(csv map[string]any) { m(csv["spec"])["maintainer"] = []any{} },
		},
		{
			name: "descriptor path not in the schema",
			want: `spec descriptor "keys[0].secretRef.nme"`,
			csv: func(csv map[string]any) {
				owned := m(m(m(csv["spec"])["customresourcedefinitions"])["owned"].([]any)[0])
				owned["specDescriptors"] = append(owned["specDescriptors"].([]any), map[string]any{
					"path": "keys[0].secretRef.nme", "displayName": "x", "description": "x",
				})
			},
		},
		{
			name: "status field without descriptor",
			want: "status.conditions of TrustedRegistry has no status descriptor",
			csv: func(csv map[string]any) {
				owned := m(m(m(csv["spec"])["customresourcedefinitions"])["owned"].([]any)[0])
				var keep []any
				for _, d := range owned["statusDescriptors"].([]any) {
					if m(d)["path"] != "conditions" {
						keep = append(keep, d)
					}
				}
				owned["statusDescriptors"] = keep
			},
		},
		{
			name: "image differs from containerImage",
			want: "containerImage is",
			csv:  func(csv map[string]any) { container(csv)["image"] = "example.com/other:v1" },
		},
		{
			name: "channel outside the naming convention (good-practices)",
			want: "not following the recommended naming convention",
			mutate: func(t *testing.T, dir, df string) {
				rewrite(t, filepath.Join(dir, "metadata", "annotations.yaml"), "channels.v1: candidate", "channels.v1: alpha,candidate")
				rewrite(t, df, "channels.v1=candidate", "channels.v1=alpha,candidate")
			},
		},
		{
			name: "Dockerfile label differs from annotations.yaml",
			want: "label operators.operatorframework.io.bundle.package.v1",
			mutate: func(t *testing.T, _, df string) {
				rewrite(t, df, "package.v1=signet", "package.v1=other")
			},
		},
		{
			name: "object kind OLM cannot install",
			want: "not a supported registry+v1 bundle object",
			mutate: func(t *testing.T, dir, _ string) {
				obj := "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\n"
				if err := os.WriteFile(filepath.Join(dir, "manifests", "x_apps_v1_daemonset.yaml"), []byte(obj), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, df := copyBundle(t)
			if tc.csv != nil {
				editCSV(t, dir, tc.csv)
			}
			if tc.mutate != nil {
				tc.mutate(t, dir, df)
			}
			findings, err := Validate(dir, df, "1.37")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range findings {
				if strings.Contains(f.String(), tc.want) {
					return
				}
			}
			t.Errorf("no finding contains %q; got:", tc.want)
			for _, f := range findings {
				t.Log(f)
			}
		})
	}
}

func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(data), old, new)), 0o644); err != nil {
		t.Fatal(err)
	}
}
