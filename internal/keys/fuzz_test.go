package keys

import (
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// A Next program is a byte string read as:
//
//	byte 0: initial overlap (index into programOverlaps)
//	then 4 bytes per call:
//	  b0: low nibble = key of name "a", high nibble = key of name "b" (0-3: key, else absent)
//	  b1: low nibble = key of name "c"; bit 4: marshal+unmarshal the ring first (restart);
//	      bits 5-7: new overlap index (>= len(programOverlaps): unchanged)
//	  b2-b3: time advance, big endian: top 3 bits pick the unit, low 13 bits the count
var (
	programOverlaps = []time.Duration{0, time.Second, 1500 * time.Millisecond, 90 * time.Second, time.Hour, week}
	programUnits    = []time.Duration{0, time.Nanosecond, time.Millisecond, 100 * time.Millisecond, time.Second, time.Minute, time.Hour, 0}
	programNames    = []string{"a", "b", "c"}
	programStart    = t0.Add(123456789 * time.Nanosecond)
)

// fpModel is the reference behaviour for one fingerprint.
type fpModel struct {
	present bool
	// retiresAt: expected RetiresAt while Retiring (zero while Active).
	retiresAt time.Time
	// realDeadline: min over the calls since removal of now+overlap, without rounding; the
	// key must still be accepted before it ("never retire before overlap elapses").
	realDeadline time.Time
	revoked      bool // overlap <= 0 at some call since removal
}

func runNextProgram(t testing.TB, program []byte) {
	keys := []*PublicKey{seededKey(t, 1), seededKey(t, 2), seededKey(t, 3), seededKey(t, 4)}
	if len(program) == 0 {
		return
	}
	overlap := programOverlaps[int(program[0])%len(programOverlaps)]
	program = program[1:]
	now := programStart
	var r Ring
	model := map[string]*fpModel{}

	for call := 0; len(program) >= 4 && call < 64; call++ {
		b0, b1, adv := program[0], program[1], binary.BigEndian.Uint16(program[2:4])
		program = program[4:]
		if i := int(b1 >> 5); i < len(programOverlaps) {
			overlap = programOverlaps[i]
		}
		now = now.Add(time.Duration(adv&0x1fff) * programUnits[adv>>13])
		var d []Desired
		for i, nib := range []byte{b0 & 0xf, b0 >> 4, b1 & 0xf} {
			if int(nib) < len(keys) {
				d = append(d, Desired{Name: programNames[i], Key: keys[nib]})
			}
		}
		if b1&0x10 != 0 {
			data, err := r.Marshal()
			if err != nil {
				t.Fatalf("call %d: Marshal: %v", call, err)
			}
			back, err := UnmarshalRing(data)
			if err != nil {
				t.Fatalf("call %d: UnmarshalRing: %v\n%s", call, err, data)
			}
			if len(r.Entries) > 0 && !reflect.DeepEqual(back, r) {
				t.Fatalf("call %d: round trip changed the ring:\n%+v\n%+v", call, back, r)
			}
			r = back
		}

		next, requeue := Next(r, d, overlap, now)

		// Update the model.
		desiredFP := map[string]bool{}
		for _, x := range d {
			desiredFP[x.Key.Fingerprint] = true
		}
		for _, k := range keys {
			m := model[k.Fingerprint]
			if m == nil {
				m = &fpModel{}
				model[k.Fingerprint] = m
			}
			switch {
			case desiredFP[k.Fingerprint]:
				*m = fpModel{present: true}
			case !m.present:
			default:
				horizon := ceilSecond(now.Add(overlap))
				if m.retiresAt.IsZero() { // was Active: removed now
					m.retiresAt, m.realDeadline, m.revoked = horizon, now.Add(overlap), false
				} else {
					if horizon.Before(m.retiresAt) {
						m.retiresAt = horizon
					}
					if d := now.Add(overlap); d.Before(m.realDeadline) {
						m.realDeadline = d
					}
				}
				if overlap <= 0 {
					m.revoked = true
				}
				if m.revoked || !m.retiresAt.After(now) {
					m.present = false
				}
			}
		}

		checkRing(t, call, next, requeue, d, now, model)

		// Idempotent.
		again, requeue2 := Next(next, d, overlap, now)
		if !reflect.DeepEqual(again, next) || requeue2 != requeue {
			t.Fatalf("call %d: Next is not idempotent:\n%+v\n%+v", call, next, again)
		}
		r = next
	}
}

func checkRing(t testing.TB, call int, r Ring, requeue time.Duration, d []Desired, now time.Time, model map[string]*fpModel) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("call %d at %s: %s\nring: %+v", call, now.Format(time.RFC3339Nano), fmtArgs(format, args...), r.Entries)
	}
	wantActive := map[[2]string]bool{}
	for _, x := range d {
		wantActive[[2]string{x.Name, x.Key.Fingerprint}] = true
	}
	gotActive := map[[2]string]bool{}
	retiringAt := map[string]time.Time{}
	var minRetire time.Duration
	for i, e := range r.Entries {
		if i > 0 && entryLess(e, r.Entries[i-1]) {
			fail("entries not sorted at %d", i)
		}
		switch e.State {
		case v1alpha1.KeyActive:
			k := [2]string{e.Name, e.Fingerprint}
			if gotActive[k] {
				fail("duplicate Active entry %v", k)
			}
			gotActive[k] = true
			if e.RetiresAt != nil {
				fail("Active entry with RetiresAt")
			}
		case v1alpha1.KeyRetiring:
			if e.RetiresAt == nil {
				fail("Retiring entry without RetiresAt")
			}
			if !e.RetiresAt.After(now) {
				fail("Retiring entry %s kept past its RetiresAt %s", e.Name, e.RetiresAt)
			}
			if e.RetiresAt.Location() != time.UTC || e.RetiresAt.Nanosecond() != 0 {
				fail("RetiresAt %s is not UTC whole seconds", e.RetiresAt)
			}
			for _, x := range d {
				if x.Key.Fingerprint == e.Fingerprint {
					fail("desired key %s is Retiring", x.Name)
				}
			}
			if prev, ok := retiringAt[e.Fingerprint]; ok && !prev.Equal(*e.RetiresAt) {
				fail("one fingerprint with two RetiresAt")
			}
			retiringAt[e.Fingerprint] = *e.RetiresAt
			if left := e.RetiresAt.Sub(now); minRetire == 0 || left < minRetire {
				minRetire = left
			}
		default:
			fail("unknown state %q", e.State)
		}
	}
	if !reflect.DeepEqual(gotActive, wantActive) && (len(gotActive) > 0 || len(wantActive) > 0) {
		fail("Active set %v, want the desired set %v", gotActive, wantActive)
	}
	if requeue != minRetire {
		fail("requeue %v, want %v", requeue, minRetire)
	}
	for fp, m := range model {
		at, retiring := retiringAt[fp]
		active := false
		for k := range gotActive {
			if k[1] == fp {
				active = true
			}
		}
		switch {
		case !m.present && (retiring || active):
			fail("fingerprint %s should be gone", fp[:15])
		case m.present && m.retiresAt.IsZero() && !active:
			fail("fingerprint %s should be Active", fp[:15])
		case m.present && !m.retiresAt.IsZero() && (!retiring || !at.Equal(m.retiresAt)):
			fail("fingerprint %s should be Retiring until %s (got %v, %s)", fp[:15], m.retiresAt, retiring, at)
		}
		// Never retire before the overlap has elapsed.
		if !m.retiresAt.IsZero() && !m.revoked && now.Before(m.realDeadline) && !retiring {
			fail("fingerprint %s dropped before its overlap elapsed (%s)", fp[:15], m.realDeadline)
		}
		if retiring && at.Before(m.realDeadline) {
			fail("fingerprint %s retires at %s, before its overlap elapses at %s", fp[:15], at, m.realDeadline)
		}
	}
}

func fmtArgs(format string, args ...any) string {
	return strings.TrimSpace(strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " "))
}

func seedPrograms() [][]byte {
	return [][]byte{
		// rotation: a=key0, then a=key1, then wait past a week
		{5, 0xf0, 0xff, 0, 0, 0xf1, 0xff, 0xc0, 1, 0xf1, 0xff, 0xdf, 0xff, 0xf1, 0xff, 0xdf, 0xff},
		// removal and re-add with restarts, overlap 1h
		{4, 0x10, 0xf2, 0, 0, 0x1f, 0xff, 0xa0, 30, 0xff, 0xff, 0xa0, 10, 0x10, 0x12, 0xa0, 5, 0xff, 0xff, 0xc0, 2},
		// rename and duplicates, sub-second steps, overlap 1.5s
		{2, 0x00, 0xf0, 0x40, 7, 0x11, 0xf1, 0x40, 200, 0xff, 0xff, 0x43, 0x84, 0xff, 0xf3, 0x80, 1},
		// overlap lowered to 0 mid-rotation (bits 5-7 of b1 = 0)
		{5, 0x10, 0xff, 0, 0, 0x32, 0xff, 0xa0, 1, 0x32, 0x0f, 0xa0, 1},
	}
}

func FuzzNext(f *testing.F) {
	for _, p := range seedPrograms() {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, program []byte) {
		runNextProgram(t, program)
	})
}

// TestNextRandomPrograms runs many random programs in plain `go test`, so the fuzz
// invariants are exercised without -fuzz.
func TestNextRandomPrograms(t *testing.T) {
	for _, p := range seedPrograms() {
		runNextProgram(t, p)
	}
	rng := rand.New(rand.NewSource(1))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := 0; i < n; i++ {
		p := make([]byte, 1+4*(1+rng.Intn(24)))
		rng.Read(p)
		// Bias toward few keys and small steps so that rotations overlap often.
		for j := 1; j+3 < len(p); j += 4 {
			if rng.Intn(2) == 0 {
				p[j] &= 0x33
			}
			if rng.Intn(3) == 0 {
				p[j+1] |= 0xe0 // keep the overlap
			}
		}
		runNextProgram(t, p)
		if t.Failed() {
			t.Logf("program %d: %x", i, p)
			return
		}
	}
}

var (
	knownReasons = map[string]bool{ReasonInvalidPublicKey: true, ReasonPrivateKeyOnly: true, ReasonWeakKey: true}
	knownAlgs    = regexp.MustCompile(`^(ECDSA-P(256|384|521)|RSA-[0-9]{4}|Ed25519)$`)
)

func FuzzParsePublicKey(f *testing.F) {
	k := testKeys(f)
	seeds := [][]byte{
		nil,
		[]byte("garbage"),
		spkiPEM(f, k.p256.Public()),
		spkiPEM(f, k.p384.Public()),
		spkiPEM(f, k.rsa2048.Public()),
		spkiPEM(f, k.rsa1024.Public()),
		spkiPEM(f, k.ed.Public()),
		spkiPEM(f, k.p224.Public()),
		pemBlock("PUBLIC KEY", secp256k1SPKI(f)),
		k.cosignPub,
		k.cosignPriv,
		selfSignedCertPEM(f, k.p256),
		append(append([]byte{}, k.cosignPub...), k.cosignPub...),
		append(append([]byte{}, k.cosignPub...), "trailing"...),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pk, err := ParsePublicKey(data)
		if err != nil {
			if pk != nil {
				t.Fatalf("non-nil key with error")
			}
			var ke *Error
			if !errors.As(err, &ke) || !knownReasons[ke.Reason] || ke.Msg == "" {
				t.Fatalf("error %#v is not a *keys.Error with a known reason", err)
			}
			msg := ke.Msg
			// Block types are labels, not key material, and may be quoted: ignore them.
			for rest := data; ; {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					break
				}
				msg = strings.ReplaceAll(msg, strconv.Quote(b.Type), "")
			}
			assertNoKeyMaterial(t, msg, data)
			return
		}
		if !fingerprintRE.MatchString(pk.Fingerprint) || !knownAlgs.MatchString(pk.Algorithm) {
			t.Fatalf("bad key %+v", pk)
		}
		again, err := ParsePublicKey([]byte(pk.PEM))
		if err != nil || *again != *pk {
			t.Fatalf("normalised PEM does not re-parse to the same key: %v", err)
		}
	})
}
