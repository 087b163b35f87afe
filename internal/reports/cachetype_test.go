package reports

import (
	toolscache "k8s.io/client-go/tools/cache"
)

// The transforms plug into client-go informers and controller-runtime's cache options
// (cache.Options.DefaultTransform, cache.ByObject.Transform), whose type is this one.
var (
	_ toolscache.TransformFunc = SignetTransform
	_ toolscache.TransformFunc = Transform(nil)
)
