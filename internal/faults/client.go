// Package faults is test support for running Signet's reconciler against an unreliable API:
// a client.Client that fails a share of requests (errors, optimistic-concurrency
// conflicts, timeouts, some after the write went through) from seeded randomness, and an
// invariant checker that sees every write of a generated policy and flags any that would
// enforce less than the last good policy (see checker.go).
//
// It is used by the envtest suite in controllers/ (faults_test.go); nothing in the
// operator imports it.
package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
)

// Kind is a kind of injected fault.
type Kind string

const (
	// Error: the request fails before reaching the apiserver (503, or 500).
	Error Kind = "error"
	// Conflict: a write fails as if the object had changed since it was read.
	Conflict Kind = "conflict"
	// Timeout: the request fails after a delay, without reaching the apiserver.
	Timeout Kind = "timeout"
	// LostReply: a write reaches the apiserver and succeeds, but the caller gets a timeout
	// (the outcome a controller cannot tell from a failed write).
	LostReply Kind = "lost-reply"
)

// Client fails a share of the requests of the client it wraps while enabled, and only
// requests made by a reconcile (the context carries a reconcile ID): event handlers' map
// functions read the informer cache, which API faults do not reach. Reads fail with Error
// or Timeout, writes with any Kind.
type Client struct {
	client.Client

	// WriteRate is the probability that one write fails while enabled (0..1). Writes are
	// the requests that reach the apiserver.
	WriteRate float64
	// ReadRate is the same for reads. The manager's client reads from the informer cache,
	// which an apiserver fault does not touch; a lower rate still exercises every read's
	// error path without making a whole reconcile (a dozen reads) fail almost always.
	ReadRate float64
	// Delay is how long a Timeout or LostReply takes (default 50ms).
	Delay time.Duration

	enabled atomic.Bool
	mu      sync.Mutex
	rnd     *rand.Rand
	counts  map[Kind]int
	reads   int
	writes  int
}

// NewClient wraps c; faults are off until Enable. The seed makes the sequence of decisions
// reproducible (the interleaving of concurrent reconciles still varies between runs).
func NewClient(c client.Client, seed uint64, writeRate, readRate float64) *Client {
	return &Client{Client: c, WriteRate: writeRate, ReadRate: readRate,
		rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), counts: map[Kind]int{}}
}

// Enable turns fault injection on or off.
func (f *Client) Enable(on bool) { f.enabled.Store(on) }

// Counts returns how many faults of each kind were injected, and how many reads and
// writes were made by reconciles while enabled.
func (f *Client) Counts() (faults map[Kind]int, reads, writes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[Kind]int, len(f.counts))
	for k, v := range f.counts {
		out[k] = v
	}
	return out, f.reads, f.writes
}

// Injected is the total number of faults injected.
func (f *Client) Injected() int {
	counts, _, _ := f.Counts()
	n := 0
	for _, v := range counts {
		n += v
	}
	return n
}

// decide draws whether this request fails, and how.
func (f *Client) decide(ctx context.Context, write bool) (Kind, bool) {
	if !f.enabled.Load() || controller.ReconcileIDFromContext(ctx) == "" {
		return "", false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rate := f.ReadRate
	if write {
		rate = f.WriteRate
		f.writes++
	} else {
		f.reads++
	}
	if f.rnd.Float64() >= rate {
		return "", false
	}
	kinds := []Kind{Error, Timeout}
	if write {
		kinds = []Kind{Error, Conflict, Timeout, LostReply}
	}
	k := kinds[f.rnd.IntN(len(kinds))]
	f.counts[k]++
	return k, true
}

var injectedResource = schema.GroupResource{Group: "faults.signet.dev", Resource: "injected"}

func (f *Client) sleep(ctx context.Context) {
	d := f.Delay
	if d <= 0 {
		d = 50 * time.Millisecond
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// before returns the error of a fault that stops the request from being sent, or nil.
// after, when true, means the request is sent and a timeout returned regardless.
func (f *Client) before(ctx context.Context, write bool, what string) (after bool, err error) {
	k, ok := f.decide(ctx, write)
	if !ok {
		return false, nil
	}
	switch k {
	case Conflict:
		return false, apierrors.NewConflict(injectedResource, what, fmt.Errorf("injected conflict"))
	case Timeout:
		f.sleep(ctx)
		return false, apierrors.NewTimeoutError("injected timeout: "+what, 1)
	case LostReply:
		return true, nil
	}
	if len(what)%2 == 0 {
		return false, apierrors.NewServiceUnavailable("injected: " + what)
	}
	return false, apierrors.NewInternalError(fmt.Errorf("injected: %s", what))
}

func (f *Client) write(ctx context.Context, what string, do func() error) error {
	lost, err := f.before(ctx, true, what)
	if err != nil {
		return err
	}
	if err := do(); err != nil || !lost {
		return err
	}
	f.sleep(ctx)
	return apierrors.NewTimeoutError("injected timeout after the write succeeded: "+what, 1)
}

func name(obj client.Object) string { return fmt.Sprintf("%T %s", obj, obj.GetName()) }

// Get implements client.Reader.
func (f *Client) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, err := f.before(ctx, false, "get "+key.String()); err != nil {
		return err
	}
	return f.Client.Get(ctx, key, obj, opts...)
}

// List implements client.Reader.
func (f *Client) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, err := f.before(ctx, false, fmt.Sprintf("list %T", list)); err != nil {
		return err
	}
	return f.Client.List(ctx, list, opts...)
}

// Apply implements client.Writer.
func (f *Client) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	return f.write(ctx, "apply", func() error { return f.Client.Apply(ctx, obj, opts...) })
}

// Create implements client.Writer.
func (f *Client) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return f.write(ctx, "create "+name(obj), func() error { return f.Client.Create(ctx, obj, opts...) })
}

// Update implements client.Writer.
func (f *Client) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return f.write(ctx, "update "+name(obj), func() error { return f.Client.Update(ctx, obj, opts...) })
}

// Patch implements client.Writer.
func (f *Client) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return f.write(ctx, "patch "+name(obj), func() error { return f.Client.Patch(ctx, obj, patch, opts...) })
}

// Delete implements client.Writer.
func (f *Client) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	return f.write(ctx, "delete "+name(obj), func() error { return f.Client.Delete(ctx, obj, opts...) })
}

// DeleteAllOf implements client.Writer.
func (f *Client) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	return f.write(ctx, "delete all of "+name(obj), func() error { return f.Client.DeleteAllOf(ctx, obj, opts...) })
}

// Status implements client.StatusClient: status writes fail like other writes.
func (f *Client) Status() client.SubResourceWriter {
	return &subResource{f: f, SubResourceWriter: f.Client.Status()}
}

// SubResource implements client.SubResourceClientConstructor.
func (f *Client) SubResource(sub string) client.SubResourceClient {
	c := f.Client.SubResource(sub)
	return &subResourceClient{subResource: &subResource{f: f, SubResourceWriter: c}, reader: c}
}

type subResource struct {
	client.SubResourceWriter
	f *Client
}

func (s *subResource) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	return s.f.write(ctx, "create subresource of "+name(obj), func() error { return s.SubResourceWriter.Create(ctx, obj, sub, opts...) })
}

func (s *subResource) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	return s.f.write(ctx, "update subresource of "+name(obj), func() error { return s.SubResourceWriter.Update(ctx, obj, opts...) })
}

func (s *subResource) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	return s.f.write(ctx, "patch subresource of "+name(obj), func() error { return s.SubResourceWriter.Patch(ctx, obj, patch, opts...) })
}

func (s *subResource) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	return s.f.write(ctx, "apply subresource", func() error { return s.SubResourceWriter.Apply(ctx, obj, opts...) })
}

// subResourceClient checks reads like the client's and writes like subResource.
type subResourceClient struct {
	*subResource
	reader client.SubResourceReader
}

func (s *subResourceClient) Get(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceGetOption) error {
	if _, err := s.f.before(ctx, false, "get subresource of "+name(obj)); err != nil {
		return err
	}
	return s.reader.Get(ctx, obj, sub, opts...)
}
