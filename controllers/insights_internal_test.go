package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestBlockedRequestFromKyvernoNote(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		note, related                    string
		kind, ns, name, image, msgPrefix string
	}{
		{
			note: "Pod production/nginx: [signet-yourorg] fail (blocked); image(s) nginx:1.27 not allowed by TrustedRegistry yourorg: only images matching ghcr.io/yourorg/* may run in this namespace",
			kind: "Pod", ns: "production", name: "nginx", image: "nginx:1.27", msgPrefix: "image(s) nginx:1.27 not allowed",
		},
		{
			note: "Pod production/app: [verify-signatures] fail (blocked); failed to verify image ghcr.io/yourorg/app@sha256:abcd: .attestors[0].entries[0].keys: no signatures found",
			kind: "Pod", ns: "production", name: "app", image: "ghcr.io/yourorg/app@sha256:abcd", msgPrefix: "failed to verify image",
		},
		{
			note: "Pod staging/x: [signet-a] fail (blocked); image(s) ghcr.io/a/b:1, ghcr.io/a/c:2 not signed by any trusted signer of TrustedRegistry a (ci)",
			kind: "Pod", ns: "staging", name: "x", image: "ghcr.io/a/b:1", msgPrefix: "image(s) ghcr.io/a/b:1, ghcr.io/a/c:2 not signed",
		},
		{
			note: "something Kyverno never wrote", related: "p1",
			kind: "Pod", ns: "ns1", name: "p1", msgPrefix: "something Kyverno never wrote",
		},
	}
	for _, tc := range cases {
		e := &corev1.Event{Message: tc.note}
		if tc.related != "" {
			e.Related = &corev1.ObjectReference{Kind: "Pod", Namespace: "ns1", Name: tc.related}
		}
		b := blockedRequest(e, at)
		if b.Kind != tc.kind || b.Namespace != tc.ns || b.Name != tc.name || b.Image != tc.image {
			t.Errorf("%q: got %s %s/%s image %q", tc.note, b.Kind, b.Namespace, b.Name, b.Image)
		}
		if len(b.Message) < len(tc.msgPrefix) || b.Message[:len(tc.msgPrefix)] != tc.msgPrefix {
			t.Errorf("%q: message %q, want prefix %q", tc.note, b.Message, tc.msgPrefix)
		}
		if !b.Time.Time.Equal(at) {
			t.Errorf("time %v", b.Time)
		}
	}
}
