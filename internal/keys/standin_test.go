package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"testing"
)

// TestStandInPEM: a stand-in key is one PEM "PUBLIC KEY" block that ParsePublicKey accepts,
// with the fingerprint of its DER, and every call makes another key.
func TestStandInPEM(t *testing.T) {
	a, err := StandInPEM()
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(a)
	if block == nil || block.Type != "PUBLIC KEY" || len(rest) != 0 {
		t.Fatalf("StandInPEM = %q: want exactly one PUBLIC KEY block", a)
	}
	pk, err := ParsePublicKey(a)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(block.Bytes)
	if want := "sha256:" + hex.EncodeToString(sum[:]); pk.Fingerprint != want {
		t.Errorf("Fingerprint = %s, want %s", pk.Fingerprint, want)
	}
	b, err := StandInPEM()
	if err != nil {
		t.Fatal(err)
	}
	if string(a) == string(b) {
		t.Error("two stand-in keys are the same")
	}
}
