package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/signet-operator/signet/controllers"
)

// recordRef is a registry's key-ring record as the tests see it in either layout: its own
// ConfigMap signet-keyring-<name> (per-registry layout), or its entry in the record shard
// signet-keyrings-NN (shared layout: controllers/records.go). Its data is given in the
// per-registry form ("ring.json", "policy-input.json") in both.
type recordRef struct {
	layout controllers.Layout
	name   string
	c      client.Client
}

func recordOf(layout controllers.Layout, name string) recordRef {
	return recordRef{layout: layout, name: name, c: sharedClient}
}

// in reads the record from another apiserver's client.
func (r recordRef) in(c client.Client) recordRef {
	r.c = c
	return r
}

func (r recordRef) shared() bool { return r.layout != controllers.LayoutPerRegistry }

// key is the ConfigMap that holds the record.
func (r recordRef) key() client.ObjectKey {
	if r.shared() {
		return client.ObjectKey{Namespace: trustNS, Name: controllers.RecordShardName(r.name)}
	}
	return client.ObjectKey{Namespace: trustNS, Name: "signet-keyring-" + r.name}
}

type entry struct {
	UID   string `json:"uid"`
	Ring  string `json:"ring"`
	Input string `json:"input,omitempty"`
}

// get reads the record: the ConfigMap that holds it and its data (an error when there is
// none).
func (r recordRef) get() (*corev1.ConfigMap, map[string]string, error) {
	cm := &corev1.ConfigMap{}
	if err := r.c.Get(context.Background(), r.key(), cm); err != nil {
		return nil, nil, err
	}
	if !r.shared() {
		return cm, cm.Data, nil
	}
	raw, ok := cm.Data[r.name]
	if !ok {
		return cm, nil, fmt.Errorf("%s holds no record of %s", cm.Name, r.name)
	}
	var e entry
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		return cm, map[string]string{"entry": raw}, nil // garbled by the test
	}
	data := map[string]string{"ring.json": e.Ring}
	if e.Input != "" {
		data["policy-input.json"] = e.Input
	}
	return cm, data, nil
}

// update changes the record's data (and the ConfigMap holding it) as someone else would.
// (A shard holds other registries' records too, which Signet may write meanwhile: a
// conflict reads it again.)
func (r recordRef) update(t *testing.T, mutate func(cm *corev1.ConfigMap, data map[string]string)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, data, err := r.get()
		if err != nil {
			return err
		}
		mutate(cm, data)
		if r.shared() {
			var e entry
			_ = json.Unmarshal([]byte(cm.Data[r.name]), &e)
			e.Ring, e.Input = data["ring.json"], data["policy-input.json"]
			b, _ := json.Marshal(e)
			cm.Data[r.name] = string(b)
			if g, ok := data["entry"]; ok {
				cm.Data[r.name] = g
			}
		}
		return r.c.Update(context.Background(), cm)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// delete deletes the ConfigMap that holds the record (in the shared layout the whole
// shard, with the records of the other registries in it).
func (r recordRef) delete(t *testing.T) *corev1.ConfigMap {
	t.Helper()
	cm, _, err := r.get()
	if cm == nil {
		t.Fatal(err)
	}
	if err := r.c.Delete(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	return cm
}
