package objects

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Errors returned by Store. They are wrapped with context (the operation and
// the object's ID); test for them with errors.Is.
var (
	// ErrObjectNotFound is returned for an ID the store does not hold, or
	// holds only until the last Unpin after a Delete.
	ErrObjectNotFound = errors.New("objects: object not found")
	// ErrStoreFull is returned when an object would fit in the arena but all
	// of the arena is pinned or being written, so nothing can be spilled to
	// make room (or spilling is disabled).
	ErrStoreFull = errors.New("objects: object store full") // all space pinned/being written
	// ErrObjectExists is returned by Create and Put for an ID that is
	// already present, being written, or deleted but still pinned.
	ErrObjectExists = errors.New("objects: object already exists")
	// ErrObjectTooLarge is returned by Create for an object larger than the
	// whole arena (Put writes such an object to a spill file instead), and
	// by Put for one when the store has no spill directory.
	ErrObjectTooLarge = errors.New("objects: object larger than the arena")
	// ErrNotSealed is returned by Pin and Read for an object that is still
	// being written.
	ErrNotSealed = errors.New("objects: object not sealed")
	// ErrAlreadySealed is returned by Seal for an object sealed before.
	ErrAlreadySealed = errors.New("objects: object already sealed")
	// ErrStoreClosed is returned by a Store's methods after Close.
	ErrStoreClosed = errors.New("objects: object store closed")
	// ErrInvalidSize is returned for a negative object size, and by
	// SharedMemory for a size that cannot be mapped.
	ErrInvalidSize = errors.New("objects: invalid size")
	// ErrOverQuota is returned by Create and Put, and for spilling, when
	// an owner's objects would hold more than its Limit allows.
	ErrOverQuota = errors.New("objects: over quota")
)

// storeAlign is the alignment of objects in the arena: a cache line, so
// that two objects never share one.
const storeAlign = 64

// Location says where a sealed object's bytes are: in the arena at Offset, or (when it is larger than the whole arena) only in the spill file at Path.
//
// Path is empty for an object in the arena. An object that is in a spill file
// has Offset -1; the file stays in place, unchanged, until the matching Unpin.
type Location struct {
	// Offset of the first byte in the arena, or -1 when the object is at Path.
	Offset int64
	// Size of the object in bytes.
	Size int64
	// Path of the spill file holding the object, or "" when it is in the arena.
	Path string
}

// StoreStats is a snapshot of a Store's counters.
type StoreStats struct {
	// Capacity is the number of bytes of the arena the store can use (its
	// length rounded down to the 64-byte alignment).
	Capacity int64
	// Used is the number of arena bytes allocated, including alignment
	// padding, objects being written, and deleted objects still pinned.
	Used int64
	// Objects is the number of sealed objects held, in the arena or spilled.
	Objects int
	// SpilledObjects is the number of objects held only in spill files.
	SpilledObjects int
	// SpilledBytes is the total size of the objects held only in spill files.
	SpilledBytes int64
	// SpillCount is the number of times an object was moved from the arena
	// to a spill file since the store was made.
	SpillCount int64
	// RestoreCount is the number of times an object was moved back from a
	// spill file into the arena.
	RestoreCount int64
	// DirectCount is the number of objects Put wrote straight to a file
	// (larger than the arena, or no room while the arena was pinned).
	DirectCount int64
	// Owners is what each owner's objects hold, by owner.
	Owners map[string]OwnerUsage
}

// OwnerUsage is what one owner's objects hold in a store.
type OwnerUsage struct {
	// Held is the bytes of its objects, in the arena or spilled, sealed
	// or being written.
	Held int64
	// Spilled is the bytes of its objects' spill files.
	Spilled int64
}

// Limit bounds what one owner's objects may hold in a store; zero is no
// bound.
type Limit struct {
	// Held bounds the bytes of the owner's objects, in the arena or
	// spilled.
	Held int64
	// Spill bounds the bytes of the owner's spill files. With a bound, the
	// owner's spill files are not held to an equal share (see Store).
	Spill int64
}

// entry is the store's record of one object.
type entry struct {
	size    int64
	off     int64 // offset in the arena, or -1 when not in the arena
	spilled bool  // the bytes are only in the spill file (and then off is -1)
	// file names its spill file in the spill directory, when it has one:
	// a spilled object, or one restored or read while it was being
	// spilled, which keeps its file for the next time. Names are unique
	// per spill, so removing a deleted object's file later never hits a
	// newer one.
	file    string
	sealed  bool
	direct  bool // being written straight to a spill file by Put
	deleted bool // Delete was called; removed at the last Unpin
	pins    int  // an unsealed object holds one pin for its writer
	lru     *list.Element
	owner   string // who the object's bytes are charged to
}

// Store holds immutable objects in an arena of memory and spills them to
// disk when the arena is full.
//
// The arena is a byte slice that the store only reads and writes between
// Create and Seal (through its writer) and when it spills or restores; it
// does the bookkeeping of offsets with an Allocator. A writer calls Create,
// fills mem[off:off+size] (directly, possibly from another process that maps
// the same memory) and calls Seal; Put does all three. A reader Pins an
// object, reads its bytes at the Location returned, and Unpins it; Read does
// all three and returns a copy.
//
// When Create needs room, sealed objects that nobody has pinned are written
// to spill files (one per object in the spill directory, named by the ID in
// hex), least recently used first, and their space is freed. Pin and Read
// bring a spilled object back into the arena. An object larger than the
// whole arena lives only in its spill file.
//
// A Store is safe for concurrent use. One mutex guards its state. The calls
// a caller may make under its own locks (Seal, Abort, PinInPlace, Unpin,
// Delete, Contains, Stats) do no I/O and never wait for any: Create and Put
// write spill files with the mutex released (the object being spilled is
// pinned meanwhile), and the files of deleted objects are removed by Sweep.
// Restoring (Pin, Read) reads files under the mutex. It starts no
// goroutines.
//
// Every object has an owner (CreateFor, PutFor: a tenant, in the agent),
// charged with its bytes and with its spill files' bytes, so that owners
// sharing a node cannot take each other's room. SetLimits bounds what each
// owner may hold. Without a bound of its own, a named owner's spill files
// are held to an equal share of the spill limit: the limit divided among
// the owners with spill files plus one more, for an owner yet to come. So
// one owner alone takes at most half, and one that fills its share makes
// its own spills and puts fail, not another's. The owner "" (the
// cluster's operator) is bounded only by the limit. To make room in the arena, the store spills the least
// recently used object whose owner has spill room left; an object whose
// owner has none stays in the arena, and a Put that finds no room there
// writes its object straight to a spill file charged to its own owner.
type Store struct {
	mu         sync.Mutex
	mem        []byte
	alloc      *Allocator
	dir        string
	dirChecked bool // dir exists (made by us or found)
	dirMade    bool // we made dir, so Close removes it
	objects    map[ID]*entry
	lru        *list.List // of ID: sealed, unpinned objects in the arena; front is most recently used
	lruBytes   int64      // arena bytes held by the objects in lru
	releaser   func(off, size int64)
	spillLimit int64 // bytes the spill files may hold (0: no limit)
	spillBytes int64 // bytes the spill files hold
	spills     int64
	restores   int64
	fileSeq    uint64   // numbers spill files
	doomed     []string // spill files of deleted objects, for Sweep
	doomedN    atomic.Int64
	directs    int64
	closed     bool
	owners     map[string]*OwnerUsage // what each owner holds; absent when nothing
	limits     map[string]Limit
}

// NewStore returns a store over the arena mem (SharedMemory.Bytes() in
// production, a plain slice in tests). Spill files go to spillDir, which is
// created when the first object is spilled; an empty spillDir disables
// spilling, so a full arena makes Create fail with ErrStoreFull.
func NewStore(mem []byte, spillDir string) *Store {
	return &Store{
		mem:     mem,
		alloc:   NewAllocator(int64(len(mem)), storeAlign),
		dir:     spillDir,
		objects: make(map[ID]*entry),
		lru:     list.New(),
		owners:  make(map[string]*OwnerUsage),
	}
}

// SetLimits replaces the bounds on what each owner's objects may hold.
// What an owner already holds past a new bound stays; its next objects
// and spills are refused until it holds less.
func (s *Store) SetLimits(limits map[string]Limit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = limits
}

// SetReleaser sets f to be called, by Trim, with every free range of the
// arena. Production passes a function that calls SharedMemory.Release for
// large ranges, so the OS gets freed pages back. Freed ranges are not
// released at once: like plasma, the store keeps them resident so that the
// next large object does not fault every page in again; the agent trims
// when it is idle (at the end of a job). f is called with the store's lock
// held and must not call the Store. nil removes the hook.
func (s *Store) SetReleaser(f func(off, size int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaser = f
}

// SetSpillLimit bounds the bytes the spill files may hold (0: no bound).
// Past it, spilling and Put of objects that do not fit in the arena fail
// with ErrStoreFull, so that a job that keeps objects cannot fill the
// node's disk.
func (s *Store) SetSpillLimit(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spillLimit = n
}

// spillRoomLocked reports whether size more bytes of owner's may go to
// spill files: within the limit, the owner's own bound, or else (for a
// named owner) its share.
func (s *Store) spillRoomLocked(owner string, size int64) error {
	if s.spillLimit > 0 && s.spillBytes+size > s.spillLimit {
		return fmt.Errorf("%w: the spill files hold %d bytes of their limit of %d", ErrStoreFull, s.spillBytes, s.spillLimit)
	}
	spilled := s.usageLocked(owner).Spilled
	if lim := s.limits[owner].Spill; lim > 0 {
		if spilled+size > lim {
			return fmt.Errorf("%w: %s's spill files on this node hold %d bytes of its quota of %d", ErrOverQuota, ownerName(owner), spilled, lim)
		}
		return nil
	}
	if owner == "" || s.spillLimit == 0 {
		return nil
	}
	if share := SpillShare(s.spillLimit, owner, s.namedSpills()); spilled+size > share {
		return fmt.Errorf("%w: %s's spill files hold %d bytes of its share of %d (the node's spill room of %d, shared with the other tenants)", ErrStoreFull, ownerName(owner), spilled, share, s.spillLimit)
	}
	return nil
}

// namedSpills returns the spilled bytes of each named owner that has any.
func (s *Store) namedSpills() map[string]int64 {
	m := make(map[string]int64, len(s.owners))
	for o, u := range s.owners {
		if o != "" && u.Spilled > 0 {
			m[o] = u.Spilled
		}
	}
	return m
}

// SpillShare returns what owner's spill files may hold when limit bounds
// them all and spills holds the named owners' spilled bytes: an equal
// share, the limit divided among the other owners in spills, owner, and
// one more for an owner yet to come. (Letting an owner past its share
// only while the room left kept a share for the newcomer and what each
// other owner lacks of its own comes to the same bound.)
func SpillShare(limit int64, owner string, spills map[string]int64) int64 {
	n := int64(2) // owner and a newcomer
	for o := range spills {
		if o != owner {
			n++
		}
	}
	return limit / n
}

// ownerName names an owner in errors.
func ownerName(owner string) string {
	if owner == "" {
		return "the operator"
	}
	return fmt.Sprintf("tenant %q", owner)
}

// usageLocked returns what owner holds (a zero value when nothing).
func (s *Store) usageLocked(owner string) OwnerUsage {
	if u := s.owners[owner]; u != nil {
		return *u
	}
	return OwnerUsage{}
}

// chargeLocked adds held and spilled bytes (either negative to give them
// back) to owner's usage.
func (s *Store) chargeLocked(owner string, held, spilled int64) {
	u := s.owners[owner]
	if u == nil {
		u = &OwnerUsage{}
		s.owners[owner] = u
	}
	u.Held += held
	u.Spilled += spilled
	s.spillBytes += spilled
	if u.Held == 0 && u.Spilled == 0 {
		delete(s.owners, owner)
	}
}

// heldRoomLocked reports whether owner may hold size more bytes.
func (s *Store) heldRoomLocked(owner string, size int64) error {
	lim := s.limits[owner].Held
	if held := s.usageLocked(owner).Held; lim > 0 && held+size > lim {
		return fmt.Errorf("%w: %s's objects on this node hold %d bytes of its object store quota of %d", ErrOverQuota, ownerName(owner), held, lim)
	}
	return nil
}

// Create reserves size bytes in the arena for id and returns their offset.
// The caller fills mem[off:off+size] and then calls Seal, or Abort to give
// up; until then the range counts as pinned. To make room, Create spills
// sealed, unpinned objects, least recently used first. It fails with
// ErrStoreFull when it cannot make room, ErrObjectTooLarge when size is
// larger than the arena, and ErrObjectExists when id is present.
func (s *Store) Create(id ID, size int64) (off int64, err error) {
	return s.CreateFor("", id, size)
}

// CreateFor is Create of an object charged to owner; it fails with
// ErrOverQuota past the owner's Limit.
func (s *Store) CreateFor(owner string, id ID, size int64) (off int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkNewLocked(id, size); err != nil {
		return 0, fmt.Errorf("%w: create %s", err, id)
	}
	if err := s.heldRoomLocked(owner, size); err != nil {
		return 0, fmt.Errorf("%w: create %s (%d bytes)", err, id, size)
	}
	off, err = s.allocateLocked(size, s.spillOutsideLocked)
	if err != nil {
		return 0, fmt.Errorf("%w: create %s (%d bytes)", err, id, size)
	}
	if err := s.recheckLocked(id, off); err != nil { // the lock was released while spilling
		return 0, fmt.Errorf("%w: create %s", err, id)
	}
	if err := s.heldRoomLocked(owner, size); err != nil { // others of owner's came meanwhile
		s.alloc.Free(off)
		return 0, fmt.Errorf("%w: create %s (%d bytes)", err, id, size)
	}
	s.objects[id] = &entry{size: size, off: off, pins: 1, owner: owner}
	s.chargeLocked(owner, size, 0)
	return off, nil
}

// checkNewLocked returns an error if a new object id of size bytes cannot
// be added.
func (s *Store) checkNewLocked(id ID, size int64) error {
	if s.closed {
		return ErrStoreClosed
	}
	if size < 0 {
		return fmt.Errorf("%w %d", ErrInvalidSize, size)
	}
	if _, ok := s.objects[id]; ok {
		return ErrObjectExists
	}
	return nil
}

// Seal makes the object id, filled after Create, readable. The writer's pin
// is dropped. Sealing an object that was deleted meanwhile frees it and
// returns ErrObjectNotFound.
func (s *Store) Seal(id ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objects[id]
	switch {
	case !ok || (e.sealed && e.deleted):
		return fmt.Errorf("%w: seal %s", ErrObjectNotFound, id)
	case e.sealed:
		return fmt.Errorf("%w: seal %s", ErrAlreadySealed, id)
	case e.direct:
		return fmt.Errorf("%w: seal %s: being written by Put", ErrObjectExists, id)
	}
	deleted := e.deleted
	e.sealed = true
	s.unpinLocked(id, e)
	if deleted {
		return fmt.Errorf("%w: seal %s: deleted before it was sealed", ErrObjectNotFound, id)
	}
	return nil
}

// Abort gives up on an object reserved by Create and not sealed, freeing its
// space. It does nothing for an ID that is not being created.
func (s *Store) Abort(id ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objects[id]
	if !ok || e.sealed || e.direct {
		return
	}
	s.removeLocked(id, e)
}

// Put stores a copy of data as the sealed object id: Create, copy and Seal.
// An object larger than the whole arena is written straight to its spill
// file instead (its Location then has a Path).
func (s *Store) Put(id ID, data []byte) error {
	return s.PutFor("", id, data)
}

// PutFor is Put of an object charged to owner; it fails with ErrOverQuota
// past the owner's Limit.
func (s *Store) PutFor(owner string, id ID, data []byte) error {
	size := int64(len(data))
	s.mu.Lock()
	if err := s.checkNewLocked(id, size); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: put %s", err, id)
	}
	if err := s.heldRoomLocked(owner, size); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: put %s (%d bytes)", err, id, size)
	}
	off := int64(-1)
	if _, fits := s.alloc.roundedSize(size); fits {
		var err error
		off, err = s.allocateLocked(size, s.spillOutsideLocked)
		if err != nil && (!errors.Is(err, ErrStoreFull) || s.dir == "") {
			s.mu.Unlock()
			return fmt.Errorf("%w: put %s (%d bytes)", err, id, size)
		}
		if err == nil {
			if err := s.recheckLocked(id, off); err != nil {
				s.mu.Unlock()
				return fmt.Errorf("%w: put %s", err, id)
			}
			if err := s.heldRoomLocked(owner, size); err != nil { // others of owner's came meanwhile
				s.alloc.Free(off)
				s.mu.Unlock()
				return fmt.Errorf("%w: put %s (%d bytes)", err, id, size)
			}
		}
		// ErrStoreFull with a spill directory: everything in the arena is
		// pinned right now, so the object goes straight to a file below.
		if err != nil {
			off = -1
		}
	}
	if off >= 0 {
		e := &entry{size: size, off: off, pins: 1, owner: owner}
		s.objects[id] = e
		s.chargeLocked(owner, size, 0)
		s.mu.Unlock()

		copy(s.mem[off:off+size], data)

		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return fmt.Errorf("%w: put %s", ErrStoreClosed, id)
		}
		// A Delete while copying leaves the entry marked; unpinning it
		// then frees it, as if the Delete came after the Put.
		e.sealed = true
		s.unpinLocked(id, e)
		return nil
	}

	// Larger than the arena, or no room while everything is pinned:
	// straight to a spill file, written without the lock. The entry
	// reserves the ID meanwhile.
	if s.dir == "" {
		s.mu.Unlock()
		return fmt.Errorf("%w: put %s (%d bytes, arena %d) with no spill directory", ErrObjectTooLarge, id, size, s.alloc.Capacity())
	}
	if err := s.recheckLocked(id, -1); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: put %s", err, id)
	}
	if err := s.heldRoomLocked(owner, size); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: put %s (%d bytes)", err, id, size)
	}
	if err := s.ensureDirLocked(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("objects: put %s: %w", id, err)
	}
	if err := s.spillRoomLocked(owner, size); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("objects: put %s (%d bytes): %w", id, size, err)
	}
	s.chargeLocked(owner, size, size) // reserved while the file is written
	e := &entry{size: size, off: -1, pins: 1, direct: true, owner: owner}
	s.directs++
	s.objects[id] = e
	name, dir := s.fileNameLocked(id), s.dir
	s.mu.Unlock()

	err := writeSpillFile(dir, name, data)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if err == nil {
			os.Remove(filepath.Join(dir, name))
		}
		return fmt.Errorf("%w: put %s", ErrStoreClosed, id)
	}
	if err != nil {
		s.chargeLocked(owner, -size, -size)
		delete(s.objects, id)
		return fmt.Errorf("objects: put %s: %w", id, err)
	}
	e.direct = false
	e.sealed = true
	e.spilled = true
	e.file = name
	s.unpinLocked(id, e)
	return nil
}

// Pin keeps the object id where it is until the matching Unpin and returns
// its Location. Pins are counted. A spilled object that nobody has pinned is
// restored into the arena (spilling others) when it fits; otherwise (larger
// than the arena, already pinned in its file, or the arena is all pinned)
// the Location names its spill file. The object becomes the most recently
// used when its last pin is dropped.
func (s *Store) Pin(id ID) (Location, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.pinnableLocked(id)
	if err != nil {
		return Location{}, err
	}
	if e.off < 0 && e.pins == 0 {
		if _, fits := s.alloc.roundedSize(e.size); fits {
			err := s.restoreLocked(e)
			if err != nil && !errors.Is(err, ErrStoreFull) {
				return Location{}, fmt.Errorf("objects: pin %s: %w", id, err)
			}
		}
	}
	return s.pinLocked(e), nil
}

// PinInPlace is Pin without the restore: a spilled object stays in its
// spill file, whose Path the Location names. It does no I/O, so a caller
// may hold its own locks around it.
func (s *Store) PinInPlace(id ID) (Location, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.pinnableLocked(id)
	if err != nil {
		return Location{}, err
	}
	return s.pinLocked(e), nil
}

// Unpin drops one pin taken by Pin. At the last one, the object becomes the
// most recently used, or is removed if it was deleted meanwhile. Unpinning
// an object that is not pinned does nothing.
func (s *Store) Unpin(id ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objects[id]
	if !ok || !e.sealed || e.pins == 0 {
		return
	}
	s.unpinLocked(id, e)
}

// Read returns a copy of the object's bytes. Like Pin, it restores a
// spilled object into the arena when it can, and otherwise reads its spill
// file.
func (s *Store) Read(id ID) ([]byte, error) {
	loc, err := s.Pin(id)
	if err != nil {
		return nil, err
	}
	defer s.Unpin(id)
	if loc.Path == "" {
		b := make([]byte, loc.Size)
		copy(b, s.mem[loc.Offset:loc.Offset+loc.Size])
		return b, nil
	}
	b, err := readSpillFile(loc.Path, loc.Size)
	if err != nil {
		return nil, fmt.Errorf("objects: read %s: %w", id, err)
	}
	return b, nil
}

// Delete removes the object id and its spill file. If it is pinned (or
// still being written), its space is freed at the last Unpin (or at Seal or
// Abort); until then it cannot be pinned or read, and the ID cannot be
// reused. Deleting an ID the store does not hold does nothing.
func (s *Store) Delete(id ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objects[id]
	if !ok || e.deleted {
		return
	}
	e.deleted = true
	if e.pins == 0 {
		s.removeLocked(id, e)
	}
}

// Contains reports whether the store holds the sealed object id, in the
// arena or spilled.
func (s *Store) Contains(id ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objects[id]
	return ok && e.sealed && !e.deleted
}

// Spilled reports whether the store holds the object only in a spill
// file.
func (s *Store) Spilled(id ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objects[id]
	return ok && e.sealed && !e.deleted && e.spilled
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := StoreStats{
		Capacity:     s.alloc.Capacity(),
		Used:         s.alloc.Used(),
		SpillCount:   s.spills,
		RestoreCount: s.restores,
		DirectCount:  s.directs,
		Owners:       make(map[string]OwnerUsage, len(s.owners)),
	}
	for o, u := range s.owners {
		st.Owners[o] = *u
	}
	for _, e := range s.objects {
		if !e.sealed || e.deleted {
			continue
		}
		st.Objects++
		if e.spilled {
			st.SpilledObjects++
			st.SpilledBytes += e.size
		}
	}
	return st
}

// Close removes the spill files (and the spill directory, if the store made
// it and it is empty) and forgets every object. The arena is left as it is;
// it belongs to the caller. Later calls fail with ErrStoreClosed or do
// nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	paths := s.doomed
	s.doomed = nil
	s.doomedN.Store(0)
	for _, e := range s.objects {
		if e.file != "" {
			paths = append(paths, s.filePath(e))
		}
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if s.dirMade {
		os.Remove(s.dir) // fails, harmlessly, while a Put is still writing there
	}
	s.objects = make(map[ID]*entry)
	s.owners = make(map[string]*OwnerUsage)
	s.spillBytes = 0
	s.lru.Init()
	s.lruBytes = 0
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("objects: close store: %w", err)
	}
	return nil
}

// allocateLocked finds size bytes in the arena, spilling sealed unpinned
// objects, least recently used first, with spill, until they fit. With
// spillOutsideLocked the lock is released while each file is written.
func (s *Store) allocateLocked(size int64, spill func(ID, *entry) error) (int64, error) {
	need, fits := s.alloc.roundedSize(size)
	if !fits {
		return 0, fmt.Errorf("%w (arena %d bytes)", ErrObjectTooLarge, s.alloc.Capacity())
	}
	evictable := s.lruBytes
	if s.dir == "" {
		evictable = 0
	}
	if s.alloc.Capacity()-s.alloc.Used()+evictable < need {
		// Even spilling everything would not make room: spill nothing.
		return 0, ErrStoreFull
	}
	for {
		if s.closed {
			return 0, ErrStoreClosed
		}
		if off, ok := s.alloc.Alloc(size); ok {
			return off, nil
		}
		if s.dir == "" {
			return 0, ErrStoreFull
		}
		id, e := s.victimLocked()
		if e == nil {
			return 0, fmt.Errorf("%w: what is in the arena cannot be spilled now", ErrStoreFull)
		}
		if err := spill(id, e); err != nil {
			return 0, err
		}
	}
}

// victimLocked returns the least recently used object in the arena that
// may be spilled: one with a spill file already, or whose owner has spill
// room for it. The objects passed over become the most recently used, so
// that the next search does not pass over them again.
func (s *Store) victimLocked() (ID, *entry) {
	for range s.lru.Len() {
		back := s.lru.Back()
		id := back.Value.(ID)
		e := s.objects[id]
		if e.file != "" || s.spillRoomLocked(e.owner, e.size) == nil {
			return id, e
		}
		s.lru.MoveToFront(back)
	}
	return NilID, nil
}

// spillHook, when set (by tests), runs before a spill file is written
// with the lock released.
var spillHook func(ID)

// recheckLocked makes sure, after allocateLocked released the lock, that
// the store is open and id still new; if not, it frees off (when >= 0).
func (s *Store) recheckLocked(id ID, off int64) error {
	err := error(nil)
	switch _, taken := s.objects[id]; {
	case s.closed:
		err = ErrStoreClosed
	case taken:
		err = ErrObjectExists
	}
	if err != nil && off >= 0 {
		s.alloc.Free(off)
	}
	return err
}

// spillOutsideLocked spills e as spillLocked does, but writes its file with
// the lock released: e is taken off the LRU list and pinned meanwhile, so
// its bytes stay put and nobody else spills it. If it was pinned or deleted
// while the file was written, it stays in the arena (keeping the file for
// its next spill) or goes with its file.
func (s *Store) spillOutsideLocked(id ID, e *entry) error {
	if e.file != "" { // written before: nothing to write
		return s.spillLocked(id, e)
	}
	if err := s.spillRoomLocked(e.owner, e.size); err != nil {
		return err
	}
	if err := s.ensureDirLocked(); err != nil {
		return fmt.Errorf("spill %s: %w", id, err)
	}
	s.offLRULocked(e)
	e.pins++
	s.chargeLocked(e.owner, 0, e.size) // reserved while the file is written
	name, dir, data := s.fileNameLocked(id), s.dir, s.mem[e.off:e.off+e.size]
	s.mu.Unlock()
	if spillHook != nil {
		spillHook(id)
	}
	err := writeSpillFile(dir, name, data)
	s.mu.Lock()
	if err != nil || s.closed {
		if !s.closed {
			s.chargeLocked(e.owner, 0, -e.size)
		}
		if err == nil {
			os.Remove(filepath.Join(dir, name)) // closed: nobody else uses the store
			err = ErrStoreClosed
		}
		s.unpinLocked(id, e)
		return fmt.Errorf("spill %s: %w", id, err)
	}
	e.file = name
	e.pins--
	if e.pins > 0 || e.deleted {
		// Pinned meanwhile (its readers use the arena) or deleted: the
		// arena copy stays until the last unpin, and then goes on the LRU
		// list, or away with its file.
		e.pins++
		s.unpinLocked(id, e)
		return nil
	}
	s.freeRangeLocked(e)
	e.spilled = true
	s.spills++
	return nil
}

// spillLocked moves a sealed, unpinned object from the arena to its spill
// file and frees its range.
func (s *Store) spillLocked(id ID, e *entry) error {
	if e.file == "" {
		if err := s.spillRoomLocked(e.owner, e.size); err != nil {
			return err
		}
		if err := s.ensureDirLocked(); err != nil {
			return fmt.Errorf("spill %s: %w", id, err)
		}
		name := s.fileNameLocked(id)
		if err := writeSpillFile(s.dir, name, s.mem[e.off:e.off+e.size]); err != nil {
			return fmt.Errorf("spill %s: %w", id, err)
		}
		e.file = name
		s.chargeLocked(e.owner, 0, e.size)
	}
	s.offLRULocked(e)
	s.freeRangeLocked(e)
	e.spilled = true
	s.spills++
	return nil
}

// restoreLocked copies a spilled, unpinned object back into the arena; it
// keeps its spill file for the next spill. The object is not put on the
// LRU list: the caller pins it.
func (s *Store) restoreLocked(e *entry) error {
	off, err := s.allocateLocked(e.size, s.spillLocked)
	if err != nil {
		return err
	}
	if err := readSpillFileInto(s.filePath(e), s.mem[off:off+e.size]); err != nil {
		s.alloc.Free(off)
		return fmt.Errorf("restore: %w", err)
	}
	e.off = off
	e.spilled = false
	s.restores++
	return nil
}

// unpinLocked drops one pin of e. At the last, it removes a deleted object
// or makes an object in the arena the most recently used.
func (s *Store) unpinLocked(id ID, e *entry) {
	e.pins--
	if e.pins > 0 {
		return
	}
	switch {
	case e.deleted:
		s.removeLocked(id, e)
	case e.off >= 0:
		e.lru = s.lru.PushFront(id)
		s.lruBytes += s.allocSize(e)
	}
}

// removeLocked forgets e, freeing its range and removing its spill file.
func (s *Store) removeLocked(id ID, e *entry) {
	s.offLRULocked(e)
	if e.off >= 0 {
		s.freeRangeLocked(e)
	}
	spilled := int64(0)
	if e.file != "" {
		s.doomed = append(s.doomed, s.filePath(e))
		s.doomedN.Store(int64(len(s.doomed)))
		e.file = ""
		spilled = e.size
	}
	s.chargeLocked(e.owner, -e.size, -spilled)
	e.spilled = false
	delete(s.objects, id)
}

// Sweep removes the spill files of deleted objects. Delete and Unpin only
// note them, so that they do no I/O; the agent sweeps on its store work
// queue.
func (s *Store) Sweep() {
	s.mu.Lock()
	paths := s.doomed
	s.doomed = nil
	s.doomedN.Store(0)
	s.mu.Unlock()
	for _, p := range paths {
		os.Remove(p)
	}
}

// Doomed reports how many spill files Sweep has to remove. It takes no
// lock.
func (s *Store) Doomed() int { return int(s.doomedN.Load()) }

// freeRangeLocked gives e's arena range back to the allocator.
func (s *Store) freeRangeLocked(e *entry) {
	s.alloc.Free(e.off)
	e.off = -1
}

// Trim calls the releaser with every free range of the arena, so that the
// pages of freed objects go back to the OS.
func (s *Store) Trim() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.releaser == nil || s.closed {
		return
	}
	s.alloc.FreeRanges(s.releaser)
}

// allocSize returns the bytes of the arena that e holds.
func (s *Store) allocSize(e *entry) int64 {
	n, _ := s.alloc.SizeOf(e.off)
	return n
}

// pinnableLocked returns the sealed, undeleted object id of an open store.
func (s *Store) pinnableLocked(id ID) (*entry, error) {
	if s.closed {
		return nil, fmt.Errorf("%w: pin %s", ErrStoreClosed, id)
	}
	e, ok := s.objects[id]
	if !ok || e.deleted {
		return nil, fmt.Errorf("%w: pin %s", ErrObjectNotFound, id)
	}
	if !e.sealed {
		return nil, fmt.Errorf("%w: pin %s", ErrNotSealed, id)
	}
	return e, nil
}

// pinLocked pins e where it is and returns its location.
func (s *Store) pinLocked(e *entry) Location {
	s.offLRULocked(e)
	e.pins++
	if e.off >= 0 {
		return Location{Offset: e.off, Size: e.size}
	}
	return Location{Offset: -1, Size: e.size, Path: s.filePath(e)}
}

// offLRULocked takes e off the LRU list, if it is on it.
func (s *Store) offLRULocked(e *entry) {
	if e.lru == nil {
		return
	}
	s.lru.Remove(e.lru)
	e.lru = nil
	s.lruBytes -= s.allocSize(e)
}

// filePath is the path of e's spill file.
func (s *Store) filePath(e *entry) string { return filepath.Join(s.dir, e.file) }

// fileNameLocked names a new spill file of id.
func (s *Store) fileNameLocked(id ID) string {
	s.fileSeq++
	return fmt.Sprintf("%s.%d", id, s.fileSeq)
}

// ensureDirLocked creates the spill directory the first time it is needed.
func (s *Store) ensureDirLocked() error {
	if s.dirChecked {
		return nil
	}
	if _, err := os.Stat(s.dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return err
		}
		s.dirMade = true
	} else if err != nil {
		return err
	}
	s.dirChecked = true
	return nil
}

// writeSpillFile writes data to the file name in dir, under a temporary
// name renamed into place, so that the file is whole or absent.
func writeSpillFile(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// readSpillFile returns the contents of a spill file that must hold size bytes.
func readSpillFile(path string, size int64) ([]byte, error) {
	b := make([]byte, size)
	if err := readSpillFileInto(path, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readSpillFileInto fills dst from the spill file at path, which must hold
// exactly len(dst) bytes.
func readSpillFileInto(path string, dst []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.ReadFull(f, dst); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var one [1]byte
	if n, _ := f.Read(one[:]); n != 0 {
		return fmt.Errorf("%s: longer than %d bytes", path, len(dst))
	}
	return nil
}
