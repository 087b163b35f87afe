package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// seededKey returns a deterministic Ed25519 public key: the same seed gives the same
// fingerprint in every run, so ring tests and fuzz corpora are reproducible.
func seededKey(t testing.TB, seed byte) *PublicKey {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(pemBlock("PUBLIC KEY", der))
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const week = 168 * time.Hour

func active(name string, k *PublicKey) Entry {
	return Entry{Name: name, Fingerprint: k.Fingerprint, Algorithm: k.Algorithm, PEM: k.PEM, State: v1alpha1.KeyActive}
}

func retiring(name string, k *PublicKey, at time.Time) Entry {
	at = at.UTC()
	return Entry{Name: name, Fingerprint: k.Fingerprint, Algorithm: k.Algorithm, PEM: k.PEM, State: v1alpha1.KeyRetiring, RetiresAt: &at}
}

func ring(entries ...Entry) Ring {
	if entries == nil {
		entries = []Entry{}
	}
	return Ring{Entries: entries}
}

func desired(pairs ...any) []Desired {
	var out []Desired
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, Desired{Name: pairs[i].(string), Key: pairs[i+1].(*PublicKey)})
	}
	return out
}

func assertRing(t *testing.T, got, want Ring) {
	t.Helper()
	if len(got.Entries) == 0 && len(want.Entries) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("ring mismatch\ngot:  %s\nwant: %s", g, w)
	}
}

// step runs Next, checks the ring and requeue, and checks idempotency and that a
// Marshal/Unmarshal round trip changes nothing.
func step(t *testing.T, prev Ring, d []Desired, overlap time.Duration, now time.Time, want Ring, wantRequeue time.Duration) Ring {
	t.Helper()
	got, requeue := Next(prev, d, overlap, now)
	assertRing(t, got, want)
	if requeue != wantRequeue {
		t.Fatalf("requeue = %v, want %v", requeue, wantRequeue)
	}
	again, requeue2 := Next(got, d, overlap, now)
	assertRing(t, again, got)
	if requeue2 != requeue {
		t.Fatalf("second call: requeue = %v, want %v", requeue2, requeue)
	}
	data, err := got.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	back, err := UnmarshalRing(data)
	if err != nil {
		t.Fatalf("UnmarshalRing: %v\n%s", err, data)
	}
	assertRing(t, back, got)
	return got
}

func TestNextRotation(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	// First reconcile: one key.
	r := step(t, Ring{}, desired("ci", a), week, t0, ring(active("ci", a)), 0)
	// The Secret's material changes: a retires one overlap later.
	t1 := t0.Add(time.Hour)
	retiresAt := t1.Add(week)
	r = step(t, r, desired("ci", b), week, t1, ring(active("ci", b), retiring("ci", a, retiresAt)), week)
	// Still accepted one second before retiresAt; the requeue points at retiresAt.
	r = step(t, r, desired("ci", b), week, retiresAt.Add(-time.Second), ring(active("ci", b), retiring("ci", a, retiresAt)), time.Second)
	// Gone at retiresAt.
	step(t, r, desired("ci", b), week, retiresAt, ring(active("ci", b)), 0)
	// And after it.
	step(t, r, desired("ci", b), week, retiresAt.Add(time.Hour), ring(active("ci", b)), 0)
}

func TestNextRemoval(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	r := step(t, Ring{}, desired("ci", a, "release", b), week, t0, ring(active("ci", a), active("release", b)), 0)
	// release removed from spec.keys.
	t1 := t0.Add(30 * time.Minute)
	r = step(t, r, desired("ci", a), week, t1, ring(active("ci", a), retiring("release", b, t1.Add(week))), week)
	// All keys removed: ci retires too, later than release.
	t2 := t1.Add(24 * time.Hour)
	r = step(t, r, nil, week, t2, ring(retiring("release", b, t1.Add(week)), retiring("ci", a, t2.Add(week))), week-24*time.Hour)
	// release goes first, then ci.
	r = step(t, r, nil, week, t1.Add(week), ring(retiring("ci", a, t2.Add(week))), 24*time.Hour)
	step(t, r, nil, week, t2.Add(week), ring(), 0)
}

func TestNextReAddDuringOverlap(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	r := step(t, Ring{}, desired("ci", a), week, t0, ring(active("ci", a)), 0)
	t1 := t0.Add(time.Hour)
	r = step(t, r, desired("ci", b), week, t1, ring(active("ci", b), retiring("ci", a, t1.Add(week))), week)
	// Rolled back: a is Active again, b retires now.
	t2 := t1.Add(2 * time.Hour)
	r = step(t, r, desired("ci", a), week, t2, ring(active("ci", a), retiring("ci", b, t2.Add(week))), week)
	// Retired again later: a gets a fresh retiresAt from the new removal.
	t3 := t2.Add(time.Hour)
	step(t, r, nil, week, t3, ring(retiring("ci", b, t2.Add(week)), retiring("ci", a, t3.Add(week))), week-time.Hour)
}

func TestNextReAddUnderAnotherName(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	r := ring(active("ci", b), retiring("old", a, t0.Add(week)))
	// The retiring key is listed again under a new name: Active, retiring entry gone.
	step(t, r, desired("ci", b, "back", a), week, t0.Add(time.Hour), ring(active("back", a), active("ci", b)), 0)
}

func TestNextRename(t *testing.T) {
	a := seededKey(t, 1)
	r := step(t, Ring{}, desired("ci-2025", a), week, t0, ring(active("ci-2025", a)), 0)
	// Same material, new name: Active under the new name, nothing retires.
	step(t, r, desired("ci-2026", a), week, t0.Add(time.Hour), ring(active("ci-2026", a)), 0)
}

func TestNextSameKeyUnderTwoNames(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	r := step(t, Ring{}, desired("x", a, "y", a), week, t0, ring(active("x", a), active("y", a)), 0)
	if got := len(r.Accepted()); got != 1 {
		t.Errorf("Accepted() has %d entries, want 1 (one per fingerprint)", got)
	}
	// y's Secret now holds b: a is still desired under x, nothing retires.
	t1 := t0.Add(time.Hour)
	r = step(t, r, desired("x", a, "y", b), week, t1, ring(active("x", a), active("y", b)), 0)
	// Both names gone: a retires once (under its last name), b too.
	t2 := t1.Add(time.Hour)
	step(t, r, nil, week, t2, ring(retiring("x", a, t2.Add(week)), retiring("y", b, t2.Add(week))), week)
	// Duplicate desired entries collapse.
	step(t, Ring{}, desired("x", a, "x", a), week, t0, ring(active("x", a)), 0)
}

func TestNextOverlapZero(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	r := ring(active("ci", a))
	step(t, r, desired("ci", b), 0, t0, ring(active("ci", b)), 0)
	step(t, r, nil, 0, t0, ring(), 0)
	step(t, r, desired("ci", b), -time.Hour, t0, ring(active("ci", b)), 0)
}

func TestNextLoweringOverlapShortensRetirement(t *testing.T) {
	a, b, c := seededKey(t, 1), seededKey(t, 2), seededKey(t, 3)
	r := ring(active("ci", c), retiring("old", b, t0.Add(time.Hour)), retiring("ci", a, t0.Add(week)))
	now := t0.Add(10 * time.Minute)
	// Lowered to 1h: a now retires at now+1h; b keeps its earlier time.
	step(t, r, desired("ci", c), time.Hour, now, ring(active("ci", c), retiring("old", b, t0.Add(time.Hour)), retiring("ci", a, now.Add(time.Hour))), 50*time.Minute)
	// Raised: nothing is extended.
	step(t, r, desired("ci", c), 2*week, now, r, time.Hour-10*time.Minute)
	// Overlap 0 revokes every retiring key at once.
	step(t, r, desired("ci", c), 0, now, ring(active("ci", c)), 0)
}

func TestNextSubSecondTimes(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	r := ring(active("ci", a))
	now := t0.Add(400 * time.Millisecond).In(time.FixedZone("CEST", 2*3600))
	// RetiresAt rounds up to the whole second (never early) and is UTC.
	want := t0.Add(time.Hour + time.Second)
	got := step(t, r, desired("ci", b), time.Hour, now, ring(active("ci", b), retiring("ci", a, want)), time.Hour+600*time.Millisecond)
	if loc := got.Entries[1].RetiresAt.Location(); loc != time.UTC {
		t.Errorf("RetiresAt location = %v, want UTC", loc)
	}
	// Still there at want-1ns, gone at want.
	step(t, got, desired("ci", b), time.Hour, want.Add(-time.Nanosecond), got, time.Nanosecond)
	step(t, got, desired("ci", b), time.Hour, want, ring(active("ci", b)), 0)
	// Status times equal the ring's.
	st := got.Status()
	if !st[1].RetiresAt.Time.Equal(want) {
		t.Errorf("status retiresAt = %v, want %v", st[1].RetiresAt, want)
	}
}

func TestNextIgnoresNilKeysAndKeepsSortOrder(t *testing.T) {
	a, b, c := seededKey(t, 1), seededKey(t, 2), seededKey(t, 3)
	prev := ring(
		retiring("z", c, t0.Add(2*time.Hour)),
		active("b", a),
		retiring("a", b, t0.Add(2*time.Hour)),
	)
	d := []Desired{{Name: "b", Key: a}, {Name: "nil", Key: nil}}
	step(t, prev, d, week, t0, ring(active("b", a), retiring("a", b, t0.Add(2*time.Hour)), retiring("z", c, t0.Add(2*time.Hour))), 2*time.Hour)
}

func TestNextMergesDuplicatePrevEntries(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	// A hand-edited record with the same (name, fingerprint) twice, one Active: the key is
	// kept as long as the most generous of them allows.
	prev := Ring{Entries: []Entry{retiring("ci", a, t0.Add(time.Hour)), active("ci", a), active("new", b)}}
	step(t, prev, desired("new", b), week, t0, ring(active("new", b), retiring("ci", a, t0.Add(week))), week)
}

func TestRestartMidRotation(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	r, _ := Next(Ring{}, desired("ci", a), week, t0)
	r, _ = Next(r, desired("ci", b), week, t0.Add(time.Hour))
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The controller restarts; status is lost; only the record survives.
	restored, err := UnmarshalRing(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, later := range []time.Duration{2 * time.Hour, week, week + time.Hour, week + 2*time.Hour} {
		now := t0.Add(later)
		want, wantRQ := Next(r, desired("ci", b), week, now)
		got, gotRQ := Next(restored, desired("ci", b), week, now)
		assertRing(t, got, want)
		if gotRQ != wantRQ {
			t.Errorf("at +%v: requeue %v, want %v", later, gotRQ, wantRQ)
		}
	}
	// The record is stable: marshalling the restored ring gives the same bytes.
	again, err := restored.Marshal()
	if err != nil || !bytes.Equal(again, data) {
		t.Errorf("re-marshalled record differs:\n%s\n%s", again, data)
	}
}

func TestMarshalFormat(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	r := Ring{Entries: []Entry{retiring("old", a, t0.Add(1500*time.Millisecond)), active("ci", b)}}
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if !strings.HasPrefix(s, `{"version":1,"entries":[{"name":"ci",`) {
		t.Errorf("record does not start with version and the sorted Active entry: %s", s)
	}
	if !strings.Contains(s, `"state":"Retiring","retiresAt":"2026-03-01T12:00:02Z"`) {
		t.Errorf("retiresAt not in UTC whole seconds (rounded up): %s", s)
	}
	if strings.Count(s, `"retiresAt"`) != 1 {
		t.Errorf("Active entries must not carry retiresAt: %s", s)
	}
	empty, err := Ring{}.Marshal()
	if err != nil || string(empty) != `{"version":1,"entries":[]}` {
		t.Errorf("empty ring = %s, %v", empty, err)
	}
	// Marshal does not reorder the caller's ring.
	if r.Entries[0].Name != "old" {
		t.Errorf("Marshal mutated its receiver")
	}
}

func TestUnmarshalRingErrors(t *testing.T) {
	a, b := seededKey(t, 1), seededKey(t, 2)
	good := func() map[string]any {
		return map[string]any{
			"version": 1,
			"entries": []any{
				map[string]any{"name": "ci", "fingerprint": a.Fingerprint, "algorithm": a.Algorithm, "pem": a.PEM, "state": "Active"},
				map[string]any{"name": "old", "fingerprint": b.Fingerprint, "pem": b.PEM, "state": "Retiring", "retiresAt": "2026-03-08T12:00:00Z"},
			},
		}
	}
	entry := func(m map[string]any, i int) map[string]any { return m["entries"].([]any)[i].(map[string]any) }
	enc := func(m map[string]any) []byte {
		d, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	// The good record parses, fills in the algorithm and tolerates unknown fields.
	g := good()
	g["future"] = "field"
	entry(g, 0)["comment"] = "x"
	r, err := UnmarshalRing(enc(g))
	if err != nil {
		t.Fatalf("good record: %v", err)
	}
	assertRing(t, r, ring(active("ci", a), retiring("old", b, time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC))))

	tests := []struct {
		name   string
		mutate func(m map[string]any) []byte
		want   string
	}{
		{"not JSON", func(map[string]any) []byte { return []byte("{") }, "key ring record"},
		{"trailing data", func(m map[string]any) []byte { return append(enc(m), " {}"...) }, "key ring record"},
		{"missing version", func(m map[string]any) []byte { delete(m, "version"); return enc(m) }, "missing version"},
		{"future version", func(m map[string]any) []byte { m["version"] = 2; return enc(m) }, "unsupported version 2"},
		{"unknown state", func(m map[string]any) []byte { entry(m, 0)["state"] = "Retired"; return enc(m) }, `unknown state "Retired"`},
		{"retiring without retiresAt", func(m map[string]any) []byte { delete(entry(m, 1), "retiresAt"); return enc(m) }, "must have retiresAt"},
		{"active with retiresAt", func(m map[string]any) []byte { entry(m, 0)["retiresAt"] = "2026-03-08T12:00:00Z"; return enc(m) }, "must not have retiresAt"},
		{"bad time", func(m map[string]any) []byte { entry(m, 1)["retiresAt"] = "next week"; return enc(m) }, "key ring record"},
		{"missing name", func(m map[string]any) []byte { entry(m, 0)["name"] = ""; return enc(m) }, "missing name"},
		{"bad fingerprint", func(m map[string]any) []byte { entry(m, 0)["fingerprint"] = "sha1:abc"; return enc(m) }, "fingerprint is not"},
		{"unparsable PEM", func(m map[string]any) []byte { entry(m, 0)["pem"] = "garbage"; return enc(m) }, "pem:"},
		{"private key PEM", func(m map[string]any) []byte {
			entry(m, 0)["pem"] = string(testKeys(t).cosignPriv)
			return enc(m)
		}, "private key"},
		{"PEM of another key", func(m map[string]any) []byte { entry(m, 0)["pem"] = b.PEM; return enc(m) }, "does not match fingerprint"},
		{"wrong algorithm", func(m map[string]any) []byte { entry(m, 0)["algorithm"] = "RSA-2048"; return enc(m) }, "does not match the key"},
		{"duplicate entry", func(m map[string]any) []byte {
			m["entries"] = append(m["entries"].([]any), entry(m, 0))
			return enc(m)
		}, "duplicate entry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnmarshalRing(tc.mutate(good()))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestUnmarshalRingNormalises(t *testing.T) {
	a := seededKey(t, 1)
	// Non-UTC, sub-second time and unsorted entries: normalised like Next's output.
	rec := `{"version":1,"entries":[` +
		`{"name":"z","fingerprint":"` + a.Fingerprint + `","pem":` + jsonString(a.PEM) + `,"state":"Retiring","retiresAt":"2026-03-01T14:00:00.2+02:00"},` +
		`{"name":"a","fingerprint":"` + a.Fingerprint + `","pem":` + jsonString(a.PEM) + `,"state":"Active"}]}`
	r, err := UnmarshalRing([]byte(rec))
	if err != nil {
		t.Fatal(err)
	}
	assertRing(t, r, ring(active("a", a), retiring("z", a, t0.Add(time.Second))))
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestStatusAndSummary(t *testing.T) {
	a, b, c := seededKey(t, 1), seededKey(t, 2), seededKey(t, 3)
	if got := (Ring{}).Summary(); got != "0 active" {
		t.Errorf("empty Summary = %q", got)
	}
	if got := (Ring{}).Status(); got != nil {
		t.Errorf("empty Status = %v, want nil", got)
	}
	if got := ring(active("ci", a)).Summary(); got != "1 active" {
		t.Errorf("Summary = %q, want 1 active", got)
	}
	r := ring(active("ci", a), active("release", b), retiring("old", c, t0))
	if got := r.Summary(); got != "2 active, 1 retiring" {
		t.Errorf("Summary = %q", got)
	}
	st := r.Status()
	if len(st) != 3 {
		t.Fatalf("Status has %d entries", len(st))
	}
	if st[0].Name != "ci" || st[0].State != v1alpha1.KeyActive || st[0].RetiresAt != nil || st[0].Fingerprint != a.Fingerprint || st[0].Algorithm != "Ed25519" {
		t.Errorf("status[0] = %+v", st[0])
	}
	if st[2].Name != "old" || st[2].State != v1alpha1.KeyRetiring || st[2].RetiresAt == nil || !st[2].RetiresAt.Time.Equal(t0) {
		t.Errorf("status[2] = %+v", st[2])
	}
	// metav1.Time serialises whole seconds: the status round-trips exactly.
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back []v1alpha1.KeyStatus
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !back[2].RetiresAt.Time.Equal(st[2].RetiresAt.Time) {
		t.Errorf("status retiresAt did not round-trip: %v vs %v", back[2].RetiresAt, st[2].RetiresAt)
	}
}

func TestAccepted(t *testing.T) {
	a, b, c := seededKey(t, 1), seededKey(t, 2), seededKey(t, 3)
	r := ring(active("y", a), active("x", a), retiring("old", b, t0), retiring("older", b, t0.Add(time.Hour)), retiring("c", c, t0))
	got := r.Accepted()
	if len(got) != 3 {
		t.Fatalf("Accepted() = %d entries, want 3", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].Fingerprint >= got[i].Fingerprint {
			t.Errorf("Accepted() not sorted by fingerprint")
		}
	}
	byFP := map[string]Entry{}
	for _, e := range got {
		byFP[e.Fingerprint] = e
	}
	if e := byFP[a.Fingerprint]; e.Name != "x" || e.State != v1alpha1.KeyActive {
		t.Errorf("for a: %+v, want Active x", e)
	}
	if e := byFP[b.Fingerprint]; e.Name != "older" {
		t.Errorf("for b: %+v, want the one retiring last", e)
	}
}
