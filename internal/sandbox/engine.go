// Package sandbox is the only importer of wazero. It validates and compiles
// guest modules (with a compile cache on disk keyed by the module's digest),
// creates instances with no filesystem, network or environment, implements
// the host side of the guest ABI (docs/ABI.md), and runs the worker process
// that hosts guests for one job.
package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/objects"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// WasmPageSize is the size of one page of guest memory.
const WasmPageSize = 64 << 10

// DefaultMemoryLimit is the default cap of one guest's linear memory.
const DefaultMemoryLimit = 2 << 30

// Errors of the sandbox.
var (
	ErrABIVersion = errors.New("sandbox: unsupported ABI version")
	ErrClosed     = errors.New("sandbox: instance closed")
)

// EngineConfig configures an Engine.
type EngineConfig struct {
	// CacheDir holds compiled modules across processes; empty disables it.
	CacheDir string
	// MemoryLimit caps each guest's linear memory in bytes (0: DefaultMemoryLimit).
	MemoryLimit int64
	// Uninterruptible compiles modules without interruption points
	// (instrument.go), for benchmarks that measure what they cost. Such
	// guests cannot be stopped short of killing their process, and stall
	// Go's garbage collector while they compute.
	Uninterruptible bool
}

// Engine is a wazero runtime with the fabric host module.
type Engine struct {
	rt       wazero.Runtime
	cache    wazero.CompilationCache
	memLimit int64
	pages    uint32
	images   []*memImage
	plain    bool   // no interruption points
	cacheDir string // where rewritten modules are kept too ("": nowhere)
	// instances maps each live instance's module to its interrupt state.
	instances instanceTable
}

// NewEngine creates a runtime. Guests run without WithCloseOnContextDone
// (it slows loops 4-11x); modules are compiled with interruption points
// instead (instrument.go), so that an instance can be stopped alone.
func NewEngine(ctx context.Context, cfg EngineConfig) (*Engine, error) {
	limit := cfg.MemoryLimit
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	pages := uint64(limit) / WasmPageSize
	if pages == 0 {
		pages = 1
	}
	if pages > 65536 {
		pages = 65536
	}
	rc := wazero.NewRuntimeConfig().WithMemoryLimitPages(uint32(pages)).WithCloseOnContextDone(false)
	e := &Engine{memLimit: int64(pages) * WasmPageSize, pages: uint32(pages), plain: cfg.Uninterruptible}
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("sandbox: compile cache %s: %w", cfg.CacheDir, err)
		}
		e.cache = c
		e.cacheDir = cfg.CacheDir
		rc = rc.WithCompilationCache(c)
	}
	e.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.rt); err != nil {
		return nil, fmt.Errorf("sandbox: wasi: %w", err)
	}
	if err := instantiateHostModule(ctx, e.rt, e.defineYield); err != nil {
		return nil, fmt.Errorf("sandbox: host module: %w", err)
	}
	return e, nil
}

// MemoryLimit returns the cap of each guest's memory in bytes.
func (e *Engine) MemoryLimit() int64 { return e.memLimit }

// Close releases the runtime.
func (e *Engine) Close(ctx context.Context) error {
	err := e.rt.Close(ctx)
	for _, im := range e.images {
		im.close()
	}
	if e.cache != nil {
		_ = e.cache.Close(ctx)
	}
	return err
}

// Digest returns the hex sha256 of a module: its content address.
func Digest(wasm []byte) string {
	d := sha256.Sum256(wasm)
	return hex.EncodeToString(d[:])
}

// minMappedImage is the smallest initial memory image worth mapping
// copy-on-write instead of copying at each instantiation.
const minMappedImage = 256 << 10

// maxMappedImage bounds the image: a module whose data reaches far into a
// large minimum memory would make one dense image that large.
const maxMappedImage = 64 << 20

// Module is a validated, compiled guest module.
type Module struct {
	e      *Engine
	cm     wazero.CompiledModule
	info   *ModuleInfo
	digest string
	hasIni bool
	image  *memImage // the initial memory, mapped copy-on-write; nil: data segments are applied
}

// Compile validates a module against the ABI and compiles it (or loads it
// from the compile cache).
func (e *Engine) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	info, err := validate(wasm, Limits{MaxMemoryPages: e.pages})
	if err != nil {
		return nil, err
	}
	digest := Digest(wasm)
	code := capTables(wasm)
	if !e.plain {
		if code, err = e.instrumented(code, digest); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
		}
	}
	var img *memImage
	// Small images are cheaper to copy than to map (C guests have a few KiB).
	if stripped, image, ok := dataImage(code, info.MemoryMin); ok && len(image) >= minMappedImage && len(image) <= maxMappedImage {
		if im, err := newMemImage(image); err == nil {
			code, img = stripped, im
		}
	}
	if img == nil {
		code = mergeData(code)
	}
	cm, err := e.rt.CompileModule(ctx, code)
	if err != nil {
		if img != nil {
			img.close()
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	m := &Module{e: e, cm: cm, info: info, digest: digest, image: img}
	if img != nil {
		e.images = append(e.images, img)
	}
	for _, x := range info.Exports {
		if x.Name == "_initialize" && x.Kind == ExternFunc {
			m.hasIni = true
		}
	}
	return m, nil
}

// Digest returns the module's sha256 in hex.
func (m *Module) Digest() string { return m.digest }

// instrumentVersion names the output of the rewrite in instrument.go in
// the cache: change it whenever the rewrite changes what it writes.
const instrumentVersion = "fuel1-stack1"

// instrumented returns the module with interruption points, from the
// engine's cache directory when an earlier process wrote it there. The
// rewrite reads every instruction (about 40 MB/s: 120 ms for a 5 MB Go
// guest), which a worker would otherwise pay at every start.
func (e *Engine) instrumented(code []byte, digest string) ([]byte, error) {
	if e.cacheDir == "" {
		return instrument(code)
	}
	path := filepath.Join(e.cacheDir, "instrumented", digest+"-"+instrumentVersion+".wasm")
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	}
	out, err := instrument(code)
	if err != nil {
		return nil, err
	}
	// Written to a temporary file and renamed, so that a worker never
	// reads a partial one; a failure only costs the next start the rewrite.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
		if f, err := os.CreateTemp(filepath.Dir(path), "tmp-*"); err == nil {
			_, werr := f.Write(out)
			cerr := f.Close()
			if werr != nil || cerr != nil || os.Rename(f.Name(), path) != nil {
				_ = os.Remove(f.Name())
			}
		}
	}
	return out, nil
}

// Instance is one guest instance. It runs one call at a time and must be
// discarded (Close) after any trap or exit.
type Instance struct {
	mod      api.Module
	alloc    api.Function
	free     api.Function
	call     api.Function
	out      *outputSink
	intr     *interruptState
	e        *Engine
	mu       sync.Mutex
	broken   bool
	memLimit int64
}

// Instantiate creates an instance: no files, no network, no environment,
// real clocks, crypto-random WASI randomness. It runs _initialize and checks
// fabric_abi_version.
func (m *Module) Instantiate(ctx context.Context) (*Instance, error) {
	return m.InstantiateWatched(ctx, nil)
}

// InstantiateWatched is Instantiate that hands the instance to started
// before its _initialize runs, so that Interrupt can stop a guest that
// loops there (Instantiate then fails with an InterruptedError).
func (m *Module) InstantiateWatched(ctx context.Context, started func(*Instance)) (*Instance, error) {
	out := &outputSink{}
	intr := &interruptState{stopped: make(chan struct{})}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStdout(out.stream(1)).
		WithStderr(out.stream(2)).
		WithSysNanotime().WithSysWalltime().WithNanosleep(intr.sleep).
		WithRandSource(rand.Reader).
		WithStartFunctions()
	alloc := experimental.MemoryAllocator(mmapAllocator)
	if m.image != nil {
		alloc = m.image.allocator()
	}
	mod, err := m.e.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, alloc), m.cm, cfg)
	if err != nil {
		return nil, fmt.Errorf("sandbox: instantiate: %w", err)
	}
	m.e.instances.add(mod, intr)
	inst := &Instance{mod: mod, out: out, memLimit: m.e.memLimit, intr: intr, e: m.e,
		alloc: mod.ExportedFunction("fabric_alloc"),
		free:  mod.ExportedFunction("fabric_free"),
		call:  mod.ExportedFunction("fabric_call"),
	}
	fail := func(err error) (*Instance, error) {
		m.e.instances.remove(mod)
		_ = mod.Close(ctx)
		return nil, err
	}
	if started != nil {
		started(inst)
	}
	if m.hasIni {
		if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
			return fail(fmt.Errorf("sandbox: _initialize failed: %w%s", err, tailNote(out.stderrTail())))
		}
	}
	res, err := mod.ExportedFunction("fabric_abi_version").Call(ctx)
	if err != nil {
		return fail(fmt.Errorf("sandbox: fabric_abi_version failed: %w", err))
	}
	if len(res) != 1 {
		return fail(fmt.Errorf("%w: fabric_abi_version must return one i32", ErrInvalidModule))
	}
	if v := int32(res[0]); v != 1 {
		return fail(fmt.Errorf("%w: module speaks ABI version %d, this host speaks 1", ErrABIVersion, v))
	}
	return inst, nil
}

func tailNote(tail string) string {
	if tail == "" {
		return ""
	}
	return "\nguest stderr (last lines):\n" + tail
}

// Close discards the instance.
func (i *Instance) Close(ctx context.Context) error {
	i.e.instances.remove(i.mod)
	return i.mod.Close(ctx)
}

// Broken reports whether the instance trapped and must be discarded.
func (i *Instance) Broken() bool { return i.broken }

// MemorySize returns the guest's current memory size in bytes.
func (i *Instance) MemorySize() uint32 { return i.mod.Memory().Size() }

// CallResult is the outcome of a Call.
type CallResult struct {
	OK      bool
	Value   []byte       // the CBOR value from return_value
	Refs    []objects.ID // IDs declared with return_refs
	Error   string       // error text: the guest's message and stack, or the trap
	Kind    string       // "app", "trap" or "exit" when !OK
	Dropped int64        // output bytes dropped by the cap
	// ExitCode is the code the guest passed to proc_exit, when Kind is
	// "exit".
	ExitCode uint32
	// ErrorTypes are the registered error types the guest's error
	// matched (return_error_types), when Kind is "app".
	ErrorTypes []abi.ErrorType
}

// ArgSource writes the arguments of a call into guest memory at dst.
type ArgSource struct {
	Len   int64
	Write func(dst []byte) error
}

// Call runs fabric_call(name, args) with host as the target of host calls.
// The error return is for failures of the host side (the instance is then
// broken too); guest failures are reported in the result.
func (i *Instance) Call(ctx context.Context, host Host, name string, args ArgSource, emit OutputFunc, outCap int64) (CallResult, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.broken {
		return CallResult{}, ErrClosed
	}
	if outCap <= 0 {
		outCap = DefaultOutputCap
	}
	i.out.reset(emit, outCap)
	total := int64(len(name)) + args.Len
	if total > int64(^uint32(0)>>1) {
		return CallResult{OK: false, Kind: "app", Error: fmt.Sprintf("arguments of %d bytes do not fit in a 32-bit guest", args.Len)}, nil
	}
	res, err := i.alloc.Call(ctx, uint64(uint32(total)))
	if err != nil {
		return i.trapped(err), nil
	}
	if len(res) != 1 {
		i.broken = true
		return CallResult{Kind: "trap", Error: "fabric_alloc must return one i32 (see docs/ABI.md)"}, nil
	}
	ptr := uint32(res[0])
	mem := i.mod.Memory()
	buf, ok := mem.Read(ptr, uint32(total))
	if !ok || (ptr == 0 && total > 0) {
		i.broken = true
		return CallResult{Kind: "trap", Error: fmt.Sprintf("fabric_alloc(%d) returned an invalid pointer %d", total, ptr)}, nil
	}
	copy(buf, name)
	if args.Write != nil {
		if err := args.Write(buf[len(name):]); err != nil {
			return CallResult{}, err
		}
	}
	cs := &callState{host: host, mod: i.mod, intr: i.intr}
	cctx := context.WithValue(ctx, callKey{}, cs)
	res, err = i.call.Call(cctx, uint64(ptr), uint64(len(name)), uint64(ptr)+uint64(len(name)), uint64(args.Len))
	cs.unstage()
	if err != nil {
		return i.trapped(err), nil
	}
	if len(res) != 1 {
		i.broken = true
		return CallResult{Kind: "trap", Error: "fabric_call must return one i32 (see docs/ABI.md)"}, nil
	}
	if _, err := i.free.Call(ctx, uint64(ptr)); err != nil {
		return i.trapped(err), nil
	}
	r := cs.result("fabric_call", uint32(res[0]))
	r.Dropped = i.out.droppedBytes()
	return r, nil
}

// result is the outcome of a call that returned status (fabric_call's
// result, or call_finish's argument), from what the guest set with the
// return imports; it clears them for the next call.
func (cs *callState) result(what string, status uint32) CallResult {
	var r CallResult
	switch {
	case cs.hostErr != "":
		r.Kind, r.Error = "app", cs.hostErr
	case status == 0 && cs.valueSet:
		r.OK, r.Value, r.Refs = true, cs.value, cs.refs
	case status == 0:
		r.Kind, r.Error = "app", what+" returned 0 without calling return_value"
	default:
		r.Kind = "app"
		r.Error, r.ErrorTypes = cs.errText, cs.errTypes
		if !cs.errSet {
			r.Error = fmt.Sprintf("%s returned %d without calling return_error", what, int32(status))
		}
	}
	cs.value, cs.valueSet, cs.refs = nil, false, nil
	cs.errText, cs.errSet, cs.errTypes, cs.hostErr = "", false, nil, ""
	return r
}

// trapped turns a failed guest call into a result and marks the instance broken.
func (i *Instance) trapped(err error) CallResult {
	i.broken = true
	r := CallResult{Kind: "trap", Dropped: i.out.droppedBytes()}
	var exit *sys.ExitError
	var intr *InterruptedError
	tail := i.out.stderrTail()
	if errors.As(err, &intr) {
		r.Kind = "interrupted"
		r.Error = intr.Error()
		return r
	}
	if errors.As(err, &exit) {
		r.Kind, r.ExitCode = "exit", exit.ExitCode()
		r.Error = fmt.Sprintf("guest exited with code %d", exit.ExitCode())
	} else {
		r.Error = "guest trapped: " + err.Error()
	}
	if tail != "" {
		r.Error += "\n" + tail
	}
	if containsOOM(tail) || containsOOM(err.Error()) {
		r.Error = fmt.Sprintf("guest ran out of memory (limit %d MiB per guest; raise it with --memory)\n%s", i.memLimit>>20, r.Error)
	}
	return r
}

func containsOOM(s string) bool {
	return strings.Contains(s, "out of memory") || strings.Contains(s, "memory.grow")
}

// ExportedFunc is a handle to an exported function looked up once, for
// calling it many times (a lookup costs microseconds, a call nanoseconds).
type ExportedFunc struct{ f api.Function }

// Export looks up an exported function.
func (i *Instance) Export(name string) (ExportedFunc, error) {
	f := i.mod.ExportedFunction(name)
	if f == nil {
		return ExportedFunc{}, fmt.Errorf("sandbox: module exports no function %q", name)
	}
	return ExportedFunc{f: f}, nil
}

// Call calls the function.
func (e ExportedFunc) Call(ctx context.Context, args ...uint64) ([]uint64, error) {
	return e.f.Call(ctx, args...)
}
