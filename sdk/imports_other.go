//go:build !wasip1

package sdk

// Outside a wasm guest the SDK compiles (for vet, docs and host-side type
// checks) but every host call fails.
type noHost struct{}

func (noHost) log(int, []byte)                        {}
func (noHost) submit([]byte, int) ([]ObjectID, error) { return nil, ErrNotInGuest }
func (noHost) actorCreate([]byte) (ObjectID, error)   { return ObjectID{}, ErrNotInGuest }
func (noHost) put([][]byte, []ObjectID) (ObjectID, error) {
	return ObjectID{}, ErrNotInGuest
}
func (noHost) yield([][]byte, []ObjectID, uint32) error     { return ErrNotInGuest }
func (noHost) get([]ObjectID, int64) ([]staged, error)      { return nil, ErrNotInGuest }
func (noHost) wait([]ObjectID, int, int64) ([]bool, error)  { return nil, ErrNotInGuest }
func (noHost) cancel(ObjectID, bool, bool) error            { return ErrNotInGuest }
func (noHost) release([]ObjectID)                           {}
func (noHost) actorLookup(string, string) (ObjectID, error) { return ObjectID{}, ErrNotInGuest }
func (noHost) actorList() ([]byte, error)                   { return nil, ErrNotInGuest }
func (noHost) actorKill(ObjectID, bool) error               { return ErrNotInGuest }

func (noHost) groupCreate([]byte) (ObjectID, error)    { return ObjectID{}, ErrNotInGuest }
func (noHost) groupWait(ObjectID, int64) (bool, error) { return false, ErrNotInGuest }
func (noHost) groupRemove(ObjectID) error              { return ErrNotInGuest }
func (noHost) nodeID() string                          { return "" }
func (noHost) cancelled() bool                         { return false }
func (noHost) runtimeContext() ([]byte, error)         { return nil, ErrNotInGuest }
func (noHost) clusterInfo() ([]byte, error)            { return nil, ErrNotInGuest }
func (noHost) groupTable() ([]byte, error)             { return nil, ErrNotInGuest }

var host hostAPI = noHost{}
