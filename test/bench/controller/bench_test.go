package main

import (
	"bytes"
	"context"
	"encoding/json"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"net/url"
	"os"
	"runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"strings"
	"testing"
	"time"
)

// tinySettings runs every building block of the quick mode on a handful of objects.
func tinySettings() settings {
	return settings{
		Mode:            "tiny",
		C0Sizes:         []int{10},
		C0Sequential:    3,
		P2:              []p2Batch{{Name: "own", N: 4}, {Name: "shared", N: 6, Shared: true}},
		P3SingleRepeats: 2,
		P3SharedRepeats: 1,
		P1Window:        3 * time.Second,
		P1SyncPeriod:    time.Second,
		P4Secrets:       20,
		P4SecretBytes:   32 << 10,
		P4Reports:       20,
		P4Steps:         1,
		I1Registries:    []int{0, 1, 3},
		I1Pods:          20,
		Quiet:           400 * time.Millisecond,
		Timeout:         40 * time.Second,
	}
}

// TestTinyRun keeps the benchmark compiling and sane: the whole program on tiny numbers
// against a real control plane (about 30 s).
func TestTinyRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	res, err := run(context.Background(), tinySettings(), time.Now(), "", testWriter{t})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var table bytes.Buffer
	res.printTable(&table)
	t.Log(table.String())

	if len(res.C0) != 3 || res.C0[0].ObjectsPerSec <= 0 || res.C0[2].LatencyP50Ms <= 0 {
		t.Errorf("C0 = %+v", res.C0)
	}
	for _, p := range res.P2 {
		if p.RegistriesPerSec <= 0 || p.Ratio <= 0 || p.Phase.Reconciles < float64(p.Registries) || p.Phase.Requests.Writes == 0 {
			t.Errorf("P2 = %+v", p)
		}
	}
	if len(res.P3) != 2 || len(res.P3[0].SamplesMs) != 2 || res.P3[1].Registries != 6 || res.P3[1].P50Ms <= 0 {
		t.Errorf("P3 = %+v", res.P3)
	}
	if res.P1 == nil || res.P1.Window.Reconciles < 10 {
		t.Fatalf("P1 = %+v (want a resync of every registry in the window)", res.P1)
	}
	if res.P1.Window.Requests.Writes != 0 || res.P1.Restart.Requests.Writes != 0 {
		t.Errorf("writes after convergence: restart %v, window %v", res.P1.Restart.WriteKinds, res.P1.Window.WriteKinds)
	}
	for _, s := range []memSeries{res.P4.Registries, res.P4.Secrets, res.P4.Reports} {
		if len(s.Samples) < 2 || s.Samples[0].HeapBytes == 0 || s.Samples[0].RSSBytes == 0 {
			t.Errorf("P4 %s = %+v", s.Name, s.Samples)
		}
	}
	if len(res.I1) != 3 || res.I1[2].Registries != 3 || res.I1[2].CPUSeconds <= 0 || res.I1[2].StatusWrites == 0 || res.I1[2].RatioToSingle <= 0 {
		t.Errorf("I1 = %+v", res.I1)
	}
	if runtime.GOOS == "linux" && res.I1[2].ControlPlaneCPUSeconds["kube-apiserver"] <= 0 {
		t.Errorf("I1 control plane CPU = %v (want kube-apiserver's)", res.I1[2].ControlPlaneCPUSeconds)
	}
	if len(res.Targets) == 0 || !strings.Contains(table.String(), "| P3 rotation") {
		t.Errorf("targets %+v, table:\n%s", res.Targets, table.String())
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatal(err)
	}
}

func TestRequestKey(t *testing.T) {
	for in, want := range map[string]string{
		"PATCH /api/v1/namespaces/signet-system/configmaps/signet-keyring-a?fieldManager=signet&force=true": "PATCH configmaps",
		"PUT /apis/trust.signet.dev/v1alpha1/trustedregistries/a/status":                                    "PUT trustedregistries/status",
		"GET /apis/policies.kyverno.io/v1/imagevalidatingpolicies?labelSelector=x&watch=true":               "WATCH imagevalidatingpolicies",
		"GET /api/v1/namespaces/signet-system/secrets?limit=500":                                            "LIST secrets",
		"GET /api/v1/namespaces/default":                                                                    "GET namespaces",
		"POST /apis/events.k8s.io/v1/namespaces/default/events":                                             "POST events",
		"GET /apis/policies.kyverno.io/v1":                                                                  "DISCOVERY /apis/policies.kyverno.io/v1",
	} {
		method, raw, _ := strings.Cut(in, " ")
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := requestKey(method, u); got != want {
			t.Errorf("requestKey(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestStats(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if p := percentile(xs, 50); p != 3 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(xs, 99); p != 5 {
		t.Errorf("p99 = %v", p)
	}
	if s := slope([]float64{0, 1, 2, 3}, []float64{10, 12, 14, 16}); s != 2 {
		t.Errorf("slope = %v", s)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestHasKey: hasKey finds a key inlined in a policy spec, however deep, and no other key.
func TestHasKey(t *testing.T) {
	pemA, err := newKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pemB, err := newKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"attestors": []any{map[string]any{"cosign": map[string]any{"key": map[string]any{"data": pemA}}}},
	}}}
	if !hasKey(u, pemA) {
		t.Error("hasKey did not find the inlined key")
	}
	if !hasKey(u, "\n"+pemA+"\n") {
		t.Error("hasKey did not find the inlined key given with surrounding space")
	}
	if hasKey(u, pemB) {
		t.Error("hasKey found a key that is not in the spec")
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in, name string
		fields   int
		ok       bool
	}{
		{"4321 (kube-apiserver) S 1234 4321 4321 0 -1 4194560 1 2 3 4 250 75 0 0", "kube-apiserver", 15, true},
		{"77 (a (b) c) R 1 77 77", "a (b) c", 4, true},
		{"77 no name", "", 0, false},
	} {
		name, fields, ok := parseStat(tc.in)
		if name != tc.name || len(fields) != tc.fields || ok != tc.ok {
			t.Errorf("parseStat(%q) = %q, %d fields, %v; want %q, %d, %v", tc.in, name, len(fields), ok, tc.name, tc.fields, tc.ok)
		}
	}
	_, f, _ := parseStat("4321 (kube-apiserver) S 1234 4321 4321 0 -1 4194560 1 2 3 4 250 75 0 0")
	if f[1] != "1234" || f[11] != "250" || f[12] != "75" {
		t.Errorf("fields %q: want ppid 1234, utime 250, stime 75 at 1, 11, 12", f)
	}
}
