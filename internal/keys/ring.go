package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// RingVersion is the version of the persisted key ring record written by Ring.Marshal.
const RingVersion = 1

// Entry is one key of the ring: a (name, fingerprint) pair and its rotation state.
type Entry struct {
	// Name is the spec.keys name the key has (Active) or last had (Retiring).
	Name string `json:"name"`
	// Fingerprint is "sha256:" and the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo.
	Fingerprint string `json:"fingerprint"`
	// Algorithm, e.g. ECDSA-P256, RSA-3072, Ed25519.
	Algorithm string `json:"algorithm,omitempty"`
	// PEM is the normalised public key. Retiring keys keep it: their Secret may have
	// changed or be gone, and the policy must still accept them until RetiresAt.
	PEM string `json:"pem"`
	// State is Active or Retiring.
	State v1alpha1.KeyState `json:"state"`
	// RetiresAt is set iff State is Retiring: from then on the key is no longer accepted.
	// UTC, whole seconds.
	RetiresAt *time.Time `json:"retiresAt,omitempty"`
}

// Ring is the set of keys a policy accepts, with their rotation state.
//
// There is one entry per (name, fingerprint). The fingerprint is what a policy accepts:
// a fingerprint listed under several names in spec.keys gives several Active entries (all
// shown in status), and it retires only when no name lists it any more.
type Ring struct {
	Entries []Entry `json:"entries"`
}

// Desired is a key currently listed in spec.keys, resolved from its Secret.
type Desired struct {
	Name string
	Key  *PublicKey
}

// Next computes the key ring from the previous ring, the keys currently in spec (all
// resolved) and the rotation overlap, at time now. It is pure and idempotent: calling it
// again with its own result, the same desired keys and the same now returns the same ring.
//
//   - Every desired key is Active, one entry per (name, fingerprint). A key that moved to
//     another name (same fingerprint) stays Active under its new name, without retiring.
//   - A previously Active key whose fingerprint is no longer desired under any name (its
//     Secret now holds other material, or it left spec.keys) becomes Retiring, with
//     RetiresAt = now + overlap rounded up to the whole second (never early). With
//     overlap <= 0 it is dropped at once.
//   - A Retiring key whose fingerprint is desired again is Active again (RetiresAt cleared).
//   - A Retiring key is dropped once RetiresAt <= now. Its RetiresAt never moves later; it
//     only moves earlier when the overlap was lowered since (to now + overlap): lowering
//     spec.rotation.overlap shortens pending retirements, and overlap 0 revokes every
//     Retiring key at once (the way to stop accepting a compromised old key).
//
// The result is sorted: Active entries by name and fingerprint, then Retiring entries by
// RetiresAt, name and fingerprint. nextRequeue is the time from now until the earliest
// RetiresAt (always > 0), or 0 when no key is Retiring.
//
// Callers must only pass a complete desired set: a key whose Secret could not be read
// must not be left out (that would start its retirement). Desired entries with a nil Key
// are ignored.
func Next(prev Ring, desired []Desired, overlap time.Duration, now time.Time) (next Ring, nextRequeue time.Duration) {
	now = now.Round(0).UTC() // drop the monotonic reading: compare wall clocks only

	type id struct{ name, fp string }
	entries := make([]Entry, 0, len(desired)+len(prev.Entries))
	active := map[id]bool{}
	desiredFP := map[string]bool{}
	for _, d := range desired {
		if d.Key == nil {
			continue
		}
		k := id{d.Name, d.Key.Fingerprint}
		desiredFP[d.Key.Fingerprint] = true
		if active[k] {
			continue
		}
		active[k] = true
		entries = append(entries, Entry{
			Name:        d.Name,
			Fingerprint: d.Key.Fingerprint,
			Algorithm:   d.Key.Algorithm,
			PEM:         d.Key.PEM,
			State:       v1alpha1.KeyActive,
		})
	}

	var horizon time.Time // latest RetiresAt allowed now
	if overlap > 0 {
		horizon = ceilSecond(now.Add(overlap))
	}
	retiring := map[id]int{} // index into entries
	for _, e := range prev.Entries {
		if desiredFP[e.Fingerprint] {
			continue // accepted as Active under its desired name(s)
		}
		if overlap <= 0 {
			continue // no overlap: replaced and retiring keys go at once
		}
		at := horizon
		if e.State == v1alpha1.KeyRetiring && e.RetiresAt != nil {
			if r := ceilSecond(*e.RetiresAt); r.Before(at) {
				at = r
			}
		}
		// An Active key just left the desired set: it retires at the horizon. A Retiring
		// key keeps its (possibly shortened) time. Unknown states are treated as Active:
		// never drop a key early.
		if !at.After(now) {
			continue
		}
		k := id{e.Name, e.Fingerprint}
		if i, dup := retiring[k]; dup {
			if at.After(*entries[i].RetiresAt) {
				entries[i].RetiresAt = &at
			}
			continue
		}
		retiring[k] = len(entries)
		entries = append(entries, Entry{
			Name:        e.Name,
			Fingerprint: e.Fingerprint,
			Algorithm:   e.Algorithm,
			PEM:         e.PEM,
			State:       v1alpha1.KeyRetiring,
			RetiresAt:   &at,
		})
	}

	next = Ring{Entries: entries}
	next.sort()
	for _, e := range next.Entries {
		if e.State != v1alpha1.KeyRetiring {
			continue
		}
		if d := e.RetiresAt.Sub(now); nextRequeue == 0 || d < nextRequeue {
			nextRequeue = d
		}
	}
	return next, nextRequeue
}

// ceilSecond returns t in UTC, rounded up to a whole second: retirement is never early,
// and whole seconds survive metav1.Time and the persisted record unchanged.
func ceilSecond(t time.Time) time.Time {
	t = t.Round(0).UTC()
	s := t.Truncate(time.Second)
	if s.Before(t) {
		s = s.Add(time.Second)
	}
	return s
}

func stateRank(s v1alpha1.KeyState) int {
	switch s {
	case v1alpha1.KeyActive:
		return 0
	case v1alpha1.KeyRetiring:
		return 1
	}
	return 2
}

func entryLess(a, b Entry) bool {
	if ra, rb := stateRank(a.State), stateRank(b.State); ra != rb {
		return ra < rb
	}
	if a.State == v1alpha1.KeyRetiring && a.RetiresAt != nil && b.RetiresAt != nil && !a.RetiresAt.Equal(*b.RetiresAt) {
		return a.RetiresAt.Before(*b.RetiresAt)
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Fingerprint < b.Fingerprint
}

func (r *Ring) sort() {
	sort.SliceStable(r.Entries, func(i, j int) bool { return entryLess(r.Entries[i], r.Entries[j]) })
}

// Accepted returns the keys a policy must accept now: one entry per distinct fingerprint
// (the Active one with the smallest name, else the Retiring one that retires last), sorted
// by fingerprint. Renderers should inline these, so that a key listed under two names is
// inlined once and the output does not depend on names.
func (r Ring) Accepted() []Entry {
	best := map[string]Entry{}
	for _, e := range r.Entries {
		cur, ok := best[e.Fingerprint]
		if !ok || betterAccepted(e, cur) {
			best[e.Fingerprint] = e
		}
	}
	out := make([]Entry, 0, len(best))
	for _, e := range best {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Fingerprint < out[j].Fingerprint })
	return out
}

func betterAccepted(a, b Entry) bool {
	ra, rb := stateRank(a.State), stateRank(b.State)
	if ra != rb {
		return ra < rb
	}
	if a.State == v1alpha1.KeyRetiring && a.RetiresAt != nil && b.RetiresAt != nil && !a.RetiresAt.Equal(*b.RetiresAt) {
		return a.RetiresAt.After(*b.RetiresAt)
	}
	return a.Name < b.Name
}

// Status mirrors the ring into status.keys, in ring order.
func (r Ring) Status() []v1alpha1.KeyStatus {
	if len(r.Entries) == 0 {
		return nil
	}
	out := make([]v1alpha1.KeyStatus, 0, len(r.Entries))
	for _, e := range r.Entries {
		ks := v1alpha1.KeyStatus{
			Name:        e.Name,
			Fingerprint: e.Fingerprint,
			Algorithm:   e.Algorithm,
			State:       e.State,
		}
		if e.RetiresAt != nil {
			t := metav1.NewTime(ceilSecond(*e.RetiresAt))
			ks.RetiresAt = &t
		}
		out = append(out, ks)
	}
	return out
}

// Summary is the short form for status.keySummary: "1 active", "2 active, 1 retiring",
// "0 active" for an empty ring.
func (r Ring) Summary() string {
	var active, retiring int
	for _, e := range r.Entries {
		switch e.State {
		case v1alpha1.KeyActive:
			active++
		case v1alpha1.KeyRetiring:
			retiring++
		}
	}
	if retiring == 0 {
		return fmt.Sprintf("%d active", active)
	}
	return fmt.Sprintf("%d active, %d retiring", active, retiring)
}

// ringRecord is the persisted form of a Ring.
type ringRecord struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

// Marshal encodes the ring for persistence (e.g. a ConfigMap in the trust namespace), so
// that rotation survives controller restarts and lost status. The output is
// deterministic: entries sorted as Next sorts them, times in UTC whole seconds (rounded
// up), a "version" field first.
func (r Ring) Marshal() ([]byte, error) {
	rec := ringRecord{Version: RingVersion, Entries: make([]Entry, 0, len(r.Entries))}
	for _, e := range r.Entries {
		if e.RetiresAt != nil {
			t := ceilSecond(*e.RetiresAt)
			e.RetiresAt = &t
		}
		rec.Entries = append(rec.Entries, e)
	}
	sorted := Ring{Entries: rec.Entries}
	sorted.sort()
	return json.Marshal(rec)
}

var fingerprintRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// UnmarshalRing decodes and validates a record written by Ring.Marshal. Unknown fields are
// ignored (a newer operator may add some); an unknown version, an unknown state, a
// Retiring entry without retiresAt (or an Active one with it), a PEM that does not parse
// as a supported public key or does not match its fingerprint, and duplicate (name,
// fingerprint) pairs are errors. The result is sorted and normalised like Next's.
func UnmarshalRing(data []byte) (Ring, error) {
	var rec ringRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return Ring{}, fmt.Errorf("key ring record: %w", err)
	}
	if rec.Version != RingVersion {
		if !bytes.Contains(data, []byte(`"version"`)) {
			return Ring{}, fmt.Errorf("key ring record: missing version")
		}
		return Ring{}, fmt.Errorf("key ring record: unsupported version %d (this operator reads version %d)", rec.Version, RingVersion)
	}
	seen := map[[2]string]bool{}
	entries := make([]Entry, 0, len(rec.Entries))
	for i, e := range rec.Entries {
		where := fmt.Sprintf("key ring record: entry %d", i)
		if e.Name == "" {
			return Ring{}, fmt.Errorf("%s: missing name", where)
		}
		where = fmt.Sprintf("%s (%q)", where, truncate(e.Name, 63))
		if !fingerprintRE.MatchString(e.Fingerprint) {
			return Ring{}, fmt.Errorf("%s: fingerprint is not sha256:<64 lowercase hex>", where)
		}
		switch e.State {
		case v1alpha1.KeyActive:
			if e.RetiresAt != nil {
				return Ring{}, fmt.Errorf("%s: an Active key must not have retiresAt", where)
			}
		case v1alpha1.KeyRetiring:
			if e.RetiresAt == nil {
				return Ring{}, fmt.Errorf("%s: a Retiring key must have retiresAt", where)
			}
			t := ceilSecond(*e.RetiresAt)
			e.RetiresAt = &t
		default:
			return Ring{}, fmt.Errorf("%s: unknown state %q (want %s or %s)", where, truncate(string(e.State), 32), v1alpha1.KeyActive, v1alpha1.KeyRetiring)
		}
		pk, err := ParsePublicKey([]byte(e.PEM))
		if err != nil {
			return Ring{}, fmt.Errorf("%s: pem: %w", where, err)
		}
		if pk.Fingerprint != e.Fingerprint {
			return Ring{}, fmt.Errorf("%s: pem does not match fingerprint %s (it is %s)", where, e.Fingerprint, pk.Fingerprint)
		}
		if e.Algorithm != "" && e.Algorithm != pk.Algorithm {
			return Ring{}, fmt.Errorf("%s: algorithm %q does not match the key (%s)", where, truncate(e.Algorithm, 32), pk.Algorithm)
		}
		e.Algorithm = pk.Algorithm
		e.PEM = pk.PEM
		k := [2]string{e.Name, e.Fingerprint}
		if seen[k] {
			return Ring{}, fmt.Errorf("%s: duplicate entry for fingerprint %s", where, e.Fingerprint)
		}
		seen[k] = true
		entries = append(entries, e)
	}
	r := Ring{Entries: entries}
	r.sort()
	return r, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
