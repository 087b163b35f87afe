// Package reports turns Kyverno policy reports into the summary Signet writes to
// TrustedRegistry status.reports.
//
// Kyverno's reports-controller writes one report per resource (named by the resource's
// UID, scope = the resource) either as wgpolicyk8s.io/v1alpha2 PolicyReport and
// ClusterPolicyReport or, with --openreportsEnabled, as openreports.io/v1alpha1 Report and
// ClusterReport. Reports carry the results of every policy, so Signet reads all of them
// and keeps only the results of its own policies.
//
// The package has three layers, all pure (no client, no clock):
//
//   - Transform and the Shrink* functions reduce a report object in place, for use as a
//     controller-runtime cache transform, so the informer cache holds only what the
//     aggregation needs (no managedFields or annotations, only Signet's results, short
//     messages, shared strings for repeated values).
//   - The From* converters turn a report object into the compact Report / Result form.
//   - Aggregate and AggregateFunc fold compact reports into a v1alpha1.ReportSummary;
//     Equal tells the controller whether a status write is needed.
//
// Wiring: an informer stores what its transform returns and controller-runtime's cache
// hands out copies of it as the typed object, so the transform must return the report
// object itself, shrunk (cache.ByObject{Transform: reports.SignetTransform}). The
// controller then lists the cached reports, converts them with FromObject (or the typed
// From* functions, with keep = IsSignetPolicy) and aggregates per TrustedRegistry. The
// compact Report is what it may keep between reconciles, e.g. keyed by report
// namespace/name from event handlers.
package reports
