package main

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests need no cluster: they keep the program compiling under `go test ./...` and
// check its flags and its table.

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Ns, []int{1, 30, 100, 300}) || c.Requests != 20 || c.Warmup != 3 || c.Mode != "full" || c.MaxLoad != 2.5 ||
		len(c.Variants) != 5 || !c.Restart || c.SignetDuringMeasure {
		t.Errorf("defaults: %+v", c)
	}
	if got := variantIDs(c.Variants); got != "signet-ivp,naive-ivp,shared-ivp,signet-cpol,shared-cpol" {
		t.Errorf("default variants %q", got)
	}

	c, err = parseFlags([]string{"-quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Ns, []int{1, 30}) || c.Requests != 10 || c.Mode != "quick" || c.MaxLoad != 0 {
		t.Errorf("-quick: %+v", c)
	}

	// explicit flags win over -quick's defaults; N is sorted and deduplicated
	c, err = parseFlags([]string{"-quick", "-n", "300, 1,30,1", "-requests", "25", "-variants", "signet-cpol,signet-ivp"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Ns, []int{1, 30, 300}) || c.Requests != 25 {
		t.Errorf("-quick with -n and -requests: %+v", c)
	}
	if c.Mode != "quick" {
		t.Errorf("-quick with -n: mode %q", c.Mode)
	}
	if c, err := parseFlags([]string{"-n", "1,10"}, io.Discard); err != nil || c.Mode != "custom" || c.MaxLoad != 2.5 {
		t.Errorf("-n without -quick: %+v, %v", c, err)
	}
	if got := variantIDs(c.Variants); got != "signet-ivp,signet-cpol" {
		t.Errorf("variants %q, want the canonical order", got)
	}

	// the shared variants, without Signet, in the canonical order
	c, err = parseFlags([]string{"-n", "1,30,100", "-requests", "20", "-variants", "shared-ivp,shared-cpol,naive-ivp"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := variantIDs(c.Variants); got != "naive-ivp,shared-ivp,shared-cpol" || c.Mode != "custom" || !slices.Equal(c.Ns, []int{1, 30, 100}) {
		t.Errorf("shared variants: %q, %+v", got, c)
	}
	for _, v := range c.Variants {
		if v.Signet || v.Shared != strings.HasPrefix(v.ID, "shared-") || (v.Kind == kindCP) != strings.HasSuffix(v.ID, "-cpol") {
			t.Errorf("variant %+v", v)
		}
	}

	// Kyverno's profiling endpoint is opt-in
	if c.KyvernoProfilePort != 0 {
		t.Errorf("profiling on by default: %+v", c)
	}
	if c, err := parseFlags([]string{"-kyverno-profile-port", "6060"}, io.Discard); err != nil || c.KyvernoProfilePort != 6060 {
		t.Errorf("-kyverno-profile-port 6060: %+v, %v", c, err)
	}

	// the usage lists every variant
	var usage bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &usage); err == nil {
		t.Error("-h: no flag.ErrHelp")
	}
	for _, v := range allVariants {
		if !strings.Contains(usage.String(), v.ID) || !strings.Contains(usage.String(), v.Label) {
			t.Errorf("usage lacks %s:\n%s", v.ID, usage.String())
		}
	}

	for _, bad := range [][]string{
		{"-n", "0"}, {"-n", "1,x"}, {"-n", ","}, {"-n", "1001"},
		{"-requests", "0"}, {"-warmup", "-1"}, {"-variants", "ivp"}, {"-variants", ""}, {"-variants", "shared"},
		{"-max-load", "-1"}, {"-step-timeout", "10s"}, {"extra"}, {"-nope"},
		{"-kyverno-profile-port", "-1"}, {"-kyverno-profile-port", "70000"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	var l latency
	for i := 20; i >= 1; i-- {
		l.SamplesMs = append(l.SamplesMs, float64(i))
	}
	l.summarize()
	if l.MedianMs != 10.5 || l.P99Ms != 20 || l.MinMs != 1 || l.MaxMs != 20 || l.MeanMs != 10.5 {
		t.Errorf("20 samples: %+v", l)
	}
	if got := percentile([]float64{1, 2, 3}, 50); got != 2 {
		t.Errorf("median of 3 = %v", got)
	}
}

func TestReport(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := newResults(cfg, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	r.Baselines = []step{{Variant: "none", Label: "no policy (baseline)", Latency: lat(7, 9)}}
	add := func(v variant, n int, med, p99 float64) {
		pols := n
		if v.Shared {
			pols = 1
		}
		r.Steps = append(r.Steps, step{Variant: v.ID, Label: v.Label, Kind: v.Kind, N: n, Policies: pols, Latency: lat(med, p99), KyvernoReadySeconds: 1.5, KyvernoRSSAfterMiB: 140})
	}
	ivp, naive, shared, cpol, sharedCP := variantByID(t, "signet-ivp"), variantByID(t, "naive-ivp"), variantByID(t, "shared-ivp"),
		variantByID(t, "signet-cpol"), variantByID(t, "shared-cpol")
	add(ivp, 1, 19, 25)
	add(ivp, 300, 3160, 9500)
	add(naive, 1, 18, 24)
	r.Steps[len(r.Steps)-1].SpecsEqualSignet = ptrTo(true)
	add(naive, 300, 3100, 4000)
	add(shared, 1, 20, 30)
	add(shared, 300, 26, 36)
	add(cpol, 1, 10, 12)
	add(cpol, 300, 14, 20)
	add(sharedCP, 1, 11, 13)
	add(sharedCP, 300, 13, 26)
	r.Steps[1].Latency.Timeouts = 1
	r.evaluate()

	if got := r.Steps[1].RatioToFirst; got < 166 || got > 167 {
		t.Errorf("ratio IVP 300/1 = %v", got)
	}
	if got := r.Steps[1].PerPolicyMs; got < 10.5 || got > 10.52 {
		t.Errorf("per policy = %v", got)
	}
	if len(r.Ratios) != 5 || r.Ratios[0].Met || r.Ratios[1].Met || !r.Ratios[2].Met || !r.Ratios[3].Met || !r.Ratios[4].Met ||
		r.Ratios[3].ToN != 300 || r.Ratios[3].FromN != 1 {
		t.Errorf("ratios: %+v", r.Ratios)
	}
	if rt := r.Ratios[2]; rt.Variant != "shared-ivp" || rt.Ratio != 1.3 || rt.P99Ratio != 1.2 {
		t.Errorf("shared-ivp ratio: %+v", rt)
	}

	var b bytes.Buffer
	printReport(&b, r)
	out := b.String()
	if testing.Verbose() {
		t.Log("\n" + out)
	}
	for _, want := range []string{
		"ImageValidatingPolicy via Signet", "3.16 s", "166×", "1.40×", "MISSED", "met",
		"no policy (baseline)", "7.0 ms", "10.5 ms", "1 timeouts", "restrictRegistries is true",
		"median(N=300) / median(N=1)", "against the 10s webhook timeout", "identical to Signet's signet-<registry> policies (checked at N = 1)",
		"shared ImageValidatingPolicies (no Signet)", "shared ClusterPolicy (no Signet)", "1.30×", "p99: 1.20×", "p99: 2.00×",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Error(err)
	}
}

func variantByID(t *testing.T, id string) variant {
	t.Helper()
	for _, v := range allVariants {
		if v.ID == id {
			return v
		}
	}
	t.Fatalf("no variant %s", id)
	return variant{}
}

func lat(med, p99 float64) latency {
	return latency{SamplesMs: []float64{med}, MedianMs: med, P99Ms: p99}
}

func ptrTo[T any](v T) *T { return &v }
