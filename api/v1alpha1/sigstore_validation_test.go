package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/signet-operator/signet/internal/testenv"
)

// spec.sigstore and spec.credentials as the apiserver judges them: a check is skipped only
// with its risk acknowledged, and the acknowledgement must match what is skipped.
func TestSigstoreValidation(t *testing.T) {
	_, c := testenv.Start(t)
	ctx := context.Background()
	keyless := func(sigstore map[string]any) map[string]any {
		s := valid()
		delete(s, "keys")
		s["keyless"] = []any{map[string]any{"name": "gh", "issuer": "https://token.actions.githubusercontent.com", "subjectRegExp": "^https://github.com/yourorg/.+$"}}
		if sigstore != nil {
			s["sigstore"] = sigstore
		}
		return s
	}
	roots := map[string]any{"configMapName": "sigstore-roots", "key": "fulcio.pem"}
	for _, tc := range []struct {
		name string
		spec map[string]any
		want string // "" = accepted
	}{
		{"roots from a ConfigMap", keyless(map[string]any{"fulcioCertificates": roots}), ""},
		{"private sigstore", keyless(map[string]any{
			"fulcioCertificates": map[string]any{"secretName": "fulcio", "key": "ca.crt"},
			"rekor":              map[string]any{"url": "https://rekor.internal", "publicKey": map[string]any{"configMapName": "r", "key": "rekor.pub"}},
			"ctLog":              map[string]any{"publicKey": map[string]any{"secretName": "ct", "key": "ctfe.pub"}},
		}), ""},
		{"offline, acknowledged", keyless(map[string]any{"fulcioCertificates": roots, "ignoreTlog": true, "ignoreSCT": true,
			"acceptRisks": []any{"NoTransparencyLog", "NoCertificateTimestamp"}}), ""},
		{"ignoreTlog unacknowledged", keyless(map[string]any{"fulcioCertificates": roots, "ignoreTlog": true}),
			"ignoreTlog: true accepts keyless signatures that were never recorded in a transparency log"},
		{"ignoreSCT acknowledged as the other risk", keyless(map[string]any{"fulcioCertificates": roots, "ignoreSCT": true, "acceptRisks": []any{"NoTransparencyLog"}}),
			"ignoreSCT: true accepts Fulcio certificates that carry no signed certificate timestamp"},
		{"acknowledgement without opt-out", keyless(map[string]any{"fulcioCertificates": roots, "acceptRisks": []any{"NoTransparencyLog"}}),
			"acceptRisks lists NoTransparencyLog but ignoreTlog is not true"},
		{"unknown risk", keyless(map[string]any{"fulcioCertificates": roots, "acceptRisks": []any{"Everything"}}),
			`supported values: "NoTransparencyLog", "NoCertificateTimestamp"`},
		{"empty sigstore", keyless(map[string]any{}), "sigstore is empty"},
		{"both Secret and ConfigMap", keyless(map[string]any{"fulcioCertificates": map[string]any{"secretName": "a", "configMapName": "b", "key": "k"}}),
			"set exactly one of secretName or configMapName"},
		{"no source", keyless(map[string]any{"fulcioCertificates": map[string]any{"key": "k"}}),
			"set exactly one of secretName or configMapName"},
		{"rekor without url", keyless(map[string]any{"rekor": map[string]any{}}), "spec.sigstore.rekor.url: Required value"},
		{"tuf mirror and root", keyless(map[string]any{"tuf": map[string]any{"mirror": "https://tuf.internal", "root": map[string]any{"configMapName": "tuf", "key": "root.json"}}}), ""},
		{"tuf without root", keyless(map[string]any{"tuf": map[string]any{"mirror": "https://tuf.internal"}}), "spec.sigstore.tuf.root: Required value"},
		{"tuf file mirror", keyless(map[string]any{"tuf": map[string]any{"mirror": "file:///etc/tuf", "root": map[string]any{"configMapName": "tuf", "key": "root.json"}}}),
			"tuf.mirror must be an http(s):// URL"},
		{"rekor ftp url", keyless(map[string]any{"rekor": map[string]any{"url": "ftp://rekor"}}), "rekor.url must be an http(s):// URL"},
		{"credentials", func() map[string]any {
			s := valid()
			s["credentials"] = map[string]any{"secretName": "regcred"}
			return s
		}(), ""},
		{"credentials bad name", func() map[string]any {
			s := valid()
			s["credentials"] = map[string]any{"secretName": "Reg_Cred"}
			return s
		}(),
			"secretName must be a DNS subdomain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ToLower(strings.NewReplacer(" ", "-", ",", "").Replace(tc.name))
			err := c.Create(ctx, object("sigstore-"+name, tc.spec))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("accepted; want %q", tc.want)
			case !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
