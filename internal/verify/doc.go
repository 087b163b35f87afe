// Package verify checks one image against a TrustedRegistry the way the Kyverno policy that
// Signet renders for it does: with cosign, against the registry, outside the cluster. The
// CLI (`signet verify`) uses it to answer "would this image be admitted?" before a
// deployment; the operator can use it to check the images of running Pods.
//
// The verdict follows the policy step by step:
//
//  1. Coverage. The raw image reference is matched against spec.images with
//     render.MatchImage, the matcher the policies are generated from. An image that matches
//     no pattern is denied when restrictRegistries is true and admitted unverified otherwise.
//  2. Digest. The digest settings are resolved with the action's defaults
//     (v1alpha1.DigestPolicy.Resolve): Enforce pins a tag to the digest it resolves to,
//     Audit verifies that digest. With digest.require and without digest.mutate, a
//     reference without a digest is denied before any signature is looked at, as Kyverno
//     does ("image … does not have a digest"). A tag is always resolved to its digest
//     (HEAD, then GET) so that the result can say which digest is (or would be) pinned and
//     whether it is signed.
//  3. Signatures. Every signer is checked with cosign.VerifyImageSignatures, one public key
//     at a time, with cosign.SimpleClaimVerifier (a signature whose payload names another
//     digest, i.e. one copied from another image, never counts) and with the transparency
//     log and SCT checks skipped exactly when spec.transparencyLog.ignore is true.
//  4. Threshold. Signers are counted as the renderer counts them (see render's package
//     documentation): a key name with its Active and Retiring keys is one signer, names that
//     share a public key are one signer, and each keyless identity is one signer. The image
//     passes when at least spec.requiredSignatures signers verified it.
//
// Checks that need trust material that is not available offline (Fulcio roots for keyless
// identities; Rekor and CT log public keys when the transparency log is not ignored) are
// never treated as passing: the signer is reported as not verified with a message saying
// it could not be checked offline, and the Result is marked Inconclusive when those signers
// could have changed the verdict. Callers that have the material pass it in Options.Trust.
//
// Registry access uses go-containerregistry with an authn.Keychain per request (default
// authn.DefaultKeychain), so the operator can pass a keychain built from a Pod's
// imagePullSecrets. Plain-HTTP registries are used only with Options.AllowInsecure (and for
// loopback and RFC 1918 addresses, which go-containerregistry always reaches over HTTP).
//
// A Verifier caches signature verdicts keyed by repository, digest and key set (the signers,
// their public keys, requiredSignatures and the transparency-log setting), for
// Options.CacheTTL when the threshold was met and Options.NegativeCacheTTL when it was not.
// Tags are never cached: they are resolved on every call. VerifyMany verifies many images
// with bounded concurrency, and concurrent requests for the same verdict share one
// verification.
package verify
