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
		len(c.Variants) != 3 || !c.Restart || c.SignetDuringMeasure {
		t.Errorf("defaults: %+v", c)
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

	for _, bad := range [][]string{
		{"-n", "0"}, {"-n", "1,x"}, {"-n", ","}, {"-n", "1001"},
		{"-requests", "0"}, {"-warmup", "-1"}, {"-variants", "ivp"}, {"-variants", ""},
		{"-max-load", "-1"}, {"-step-timeout", "10s"}, {"extra"}, {"-nope"},
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
		r.Steps = append(r.Steps, step{Variant: v.ID, Label: v.Label, Kind: v.Kind, N: n, Latency: lat(med, p99), KyvernoReadySeconds: 1.5, KyvernoRSSAfterMiB: 140})
	}
	ivp, naive, cpol := allVariants[0], allVariants[1], allVariants[2]
	add(ivp, 1, 19, 25)
	add(ivp, 300, 3160, 9500)
	add(naive, 1, 18, 24)
	r.Steps[len(r.Steps)-1].SpecsEqualSignet = ptrTo(true)
	add(naive, 300, 3100, 4000)
	add(cpol, 1, 10, 12)
	add(cpol, 300, 14, 20)
	r.Steps[1].Latency.Timeouts = 1
	r.evaluate()

	if got := r.Steps[1].RatioToFirst; got < 166 || got > 167 {
		t.Errorf("ratio IVP 300/1 = %v", got)
	}
	if got := r.Steps[1].PerPolicyMs; got < 10.5 || got > 10.52 {
		t.Errorf("per policy = %v", got)
	}
	if len(r.Ratios) != 3 || r.Ratios[0].Met || !r.Ratios[2].Met || r.Ratios[2].ToN != 300 || r.Ratios[2].FromN != 1 {
		t.Errorf("ratios: %+v", r.Ratios)
	}

	var b bytes.Buffer
	printReport(&b, r)
	out := b.String()
	if testing.Verbose() {
		t.Log("\n" + out)
	}
	for _, want := range []string{
		"ImageValidatingPolicy via Signet", "3.16 s", "166×", "1.40×", "MISSED", "met",
		"no policy (baseline)", "7.0 ms", "10.5 ms", "1 timeouts", "restrictRegistries is false",
		"median(N=300) / median(N=1)", "against the 10s webhook timeout", "identical (checked at N = 1)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Error(err)
	}
}

func lat(med, p99 float64) latency {
	return latency{SamplesMs: []float64{med}, MedianMs: med, P99Ms: p99}
}

func ptrTo[T any](v T) *T { return &v }
