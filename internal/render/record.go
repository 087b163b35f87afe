package render

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"

	"github.com/signet-operator/signet/api/v1alpha1"
)

// RecordDataKey is the key, in a registry's key-ring ConfigMap, of its recorded input: the
// last input that rendered without error. The shared policies are rendered from these
// records (docs/architecture.md, "Fail-closed rules").
const RecordDataKey = "policy-input.json"

// RecordShardPrefix names the ConfigMaps that hold the records of the shared layout, one
// entry per registry (controllers/records.go).
const RecordShardPrefix = "signet-keyrings-"

// record is the persisted form of an Input.
type record struct {
	Name   string                       `json:"name"`
	UID    types.UID                    `json:"uid"`
	Spec   v1alpha1.TrustedRegistrySpec `json:"spec"`
	Keys   []Key                        `json:"keys"`
	Engine v1alpha1.Engine              `json:"engine"`
	// TrustRoots is the spec.sigstore trust material (absent when there is none).
	TrustRoots *TrustRoots `json:"trustRoots,omitempty"`
}

// EncodeRecord is the recorded form of in (its registry's name, UID and spec, the keys and
// the engine; nothing else of the registry is kept).
func EncodeRecord(in Input) (string, error) {
	if in.Registry == nil {
		return "", fmt.Errorf("render: encoding the policy input: nil TrustedRegistry")
	}
	b, err := json.Marshal(record{Name: in.Registry.Name, UID: in.Registry.UID, Spec: in.Registry.Spec, Keys: in.Keys, Engine: in.Engine, TrustRoots: in.TrustRoots})
	if err != nil {
		return "", fmt.Errorf("render: encoding the policy input: %w", err)
	}
	return string(b), nil
}

// DecodeRecord reads a recorded input written by EncodeRecord.
func DecodeRecord(s string) (Input, error) {
	var r record
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return Input{}, err
	}
	tr := &v1alpha1.TrustedRegistry{}
	tr.Name, tr.UID, tr.Spec = r.Name, r.UID, r.Spec
	return Input{Registry: tr, Keys: r.Keys, Engine: r.Engine, TrustRoots: r.TrustRoots}, nil
}
