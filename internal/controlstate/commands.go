package controlstate

import (
	"cmp"
	"fmt"
	"slices"
)

// Command is one change to the state: exactly one field is set. Request,
// when set, makes it idempotent: the proposer's unique name for it, so
// that a proposal retried after its answer was lost (a leader that died
// after committing it) gets the first application's answer and changes
// nothing again.
type Command struct {
	Request      string        `cbor:"15,keyasint,omitempty"`
	Submit       *Submit       `cbor:"1,keyasint,omitempty"`
	Start        *Start        `cbor:"2,keyasint,omitempty"`
	End          *End          `cbor:"3,keyasint,omitempty"`
	Stop         *Stop         `cbor:"4,keyasint,omitempty"`
	Delete       *Delete       `cbor:"5,keyasint,omitempty"`
	Restart      *Restart      `cbor:"6,keyasint,omitempty"`
	AddModule    *AddModule    `cbor:"7,keyasint,omitempty"`
	DeleteModule *DeleteModule `cbor:"8,keyasint,omitempty"`
	NameActor    *NameActor    `cbor:"9,keyasint,omitempty"`
	UnnameActor  *UnnameActor  `cbor:"10,keyasint,omitempty"`
	ForgetNode   *ForgetNode   `cbor:"11,keyasint,omitempty"`
	CreateTenant *CreateTenant `cbor:"12,keyasint,omitempty"`
	DeleteTenant *DeleteTenant `cbor:"13,keyasint,omitempty"`
	CreateToken  *CreateToken  `cbor:"14,keyasint,omitempty"`
	RevokeToken  *RevokeToken  `cbor:"16,keyasint,omitempty"`
	SetQuota     *SetQuota     `cbor:"17,keyasint,omitempty"`

	CreateJoinToken *CreateJoinToken `cbor:"18,keyasint,omitempty"`
	UseJoinToken    *UseJoinToken    `cbor:"19,keyasint,omitempty"`
	DeleteJoinToken *DeleteJoinToken `cbor:"20,keyasint,omitempty"`
	AdmitNode       *AdmitNode       `cbor:"21,keyasint,omitempty"`
	RevokeNode      *RevokeNode      `cbor:"22,keyasint,omitempty"`

	AddTenantKey    *AddTenantKey    `cbor:"23,keyasint,omitempty"`
	RemoveTenantKey *RemoveTenantKey `cbor:"24,keyasint,omitempty"`

	PutDeployment    *PutDeployment    `cbor:"25,keyasint,omitempty"`
	DeleteDeployment *DeleteDeployment `cbor:"26,keyasint,omitempty"`
	ScaleDeployment  *ScaleDeployment  `cbor:"27,keyasint,omitempty"`
}

// Submit records a new job, pending on Node.
type Submit struct {
	ID          string   `cbor:"1,keyasint"`
	Digest      string   `cbor:"2,keyasint"`
	Args        []string `cbor:"3,keyasint,omitempty"`
	Node        string   `cbor:"4,keyasint"`
	Time        int64    `cbor:"5,keyasint"`
	MaxRestarts uint32   `cbor:"6,keyasint,omitempty"`
	Tenant      string   `cbor:"7,keyasint,omitempty"`
	Owner       string   `cbor:"8,keyasint,omitempty"`
}

// Start records that the attempt's driver started.
type Start struct {
	ID      string `cbor:"1,keyasint"`
	Attempt uint32 `cbor:"2,keyasint"`
	Time    int64  `cbor:"3,keyasint"`
	// Run is the attempt's run: the ID its driver's tasks, actors and
	// objects carry on the nodes (the state API's job filter).
	Run string `cbor:"4,keyasint,omitempty"`
}

// End records how the attempt's driver ended: State is Succeeded or
// Failed.
type End struct {
	ID       string   `cbor:"1,keyasint"`
	Attempt  uint32   `cbor:"2,keyasint"`
	State    JobState `cbor:"3,keyasint"`
	Error    string   `cbor:"4,keyasint,omitempty"`
	ExitCode int      `cbor:"5,keyasint,omitempty"`
	Time     int64    `cbor:"6,keyasint"`
}

// Stop ends a job that has not ended as stopped, for Reason.
type Stop struct {
	ID     string `cbor:"1,keyasint"`
	Reason string `cbor:"2,keyasint,omitempty"`
	Time   int64  `cbor:"3,keyasint"`
}

// Delete removes a job that has ended.
type Delete struct {
	ID string `cbor:"1,keyasint"`
}

// Restart moves a job whose attempt was lost (its node failed) to Node
// as its next attempt, when it has restarts left; Cause says why.
type Restart struct {
	ID      string `cbor:"1,keyasint"`
	Attempt uint32 `cbor:"2,keyasint"` // the attempt that was lost
	Node    string `cbor:"3,keyasint"`
	Cause   string `cbor:"4,keyasint"`
	Time    int64  `cbor:"5,keyasint"`
}

// AddModule records that Node holds a module (Uploaded: by `fabric
// upload`, which marks the module for good).
type AddModule struct {
	Digest   string `cbor:"1,keyasint"`
	Size     int64  `cbor:"2,keyasint"`
	Name     string `cbor:"3,keyasint,omitempty"`
	Node     string `cbor:"4,keyasint"`
	Time     int64  `cbor:"5,keyasint"`
	Uploaded bool   `cbor:"6,keyasint,omitempty"`
	Tenant   string `cbor:"7,keyasint,omitempty"` // "": the cluster's operator
	// Copy records a node's copy only: no one stored the module anew.
	Copy bool `cbor:"8,keyasint,omitempty"`
	// Signature is the tenant's signature of the module (see keys.go):
	// needed when the tenant has signing keys.
	Signature []byte `cbor:"9,keyasint,omitempty"`
}

// DeleteModule removes a module's record (Node and Tenant empty), one
// node's copy (Node), or a tenant's claim on it (Tenant): the record goes
// with its last claim, unless the cluster's operator stored it too.
type DeleteModule struct {
	Digest string `cbor:"1,keyasint"`
	Node   string `cbor:"2,keyasint,omitempty"`
	Tenant string `cbor:"3,keyasint,omitempty"`
}

// Apply applies a command. It fails, changing nothing, on a command that
// is malformed or does not fit the state (a stale attempt, a job that
// exists); the same command fails the same way on every server.
func (s *State) Apply(c Command) error {
	if c.Request == "" {
		return s.apply(c)
	}
	if len(c.Request) > 64 {
		return fmt.Errorf("%w: a request name of %d bytes", ErrBadCommand, len(c.Request))
	}
	if r, ok := s.requests[c.Request]; ok {
		return r.err()
	}
	err := s.apply(c)
	s.remember(c.Request, err)
	return err
}

func (s *State) apply(c Command) error {
	n := 0
	for _, set := range []bool{c.Submit != nil, c.Start != nil, c.End != nil, c.Stop != nil, c.Delete != nil,
		c.Restart != nil, c.AddModule != nil, c.DeleteModule != nil, c.NameActor != nil, c.UnnameActor != nil, c.ForgetNode != nil,
		c.CreateTenant != nil, c.DeleteTenant != nil, c.CreateToken != nil, c.RevokeToken != nil, c.SetQuota != nil,
		c.CreateJoinToken != nil, c.UseJoinToken != nil, c.DeleteJoinToken != nil, c.AdmitNode != nil, c.RevokeNode != nil,
		c.AddTenantKey != nil, c.RemoveTenantKey != nil, c.PutDeployment != nil, c.DeleteDeployment != nil, c.ScaleDeployment != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: %d changes in one command", ErrBadCommand, n)
	}
	switch {
	case c.PutDeployment != nil:
		return s.putDeployment(c.PutDeployment)
	case c.ScaleDeployment != nil:
		return s.scaleDeployment(c.ScaleDeployment)
	case c.DeleteDeployment != nil:
		if _, ok := s.deployments[c.DeleteDeployment.Key]; !ok {
			return fmt.Errorf("%w: %q", ErrNoDeployment, c.DeleteDeployment.Key)
		}
		delete(s.deployments, c.DeleteDeployment.Key)
		return nil
	case c.CreateJoinToken != nil:
		return s.createJoinToken(c.CreateJoinToken)
	case c.UseJoinToken != nil:
		return s.useJoinToken(c.UseJoinToken)
	case c.DeleteJoinToken != nil:
		if _, ok := s.joinTokens[c.DeleteJoinToken.ID]; !ok {
			return fmt.Errorf("%w: %q", ErrNoJoinToken, c.DeleteJoinToken.ID)
		}
		delete(s.joinTokens, c.DeleteJoinToken.ID)
		return nil
	case c.AdmitNode != nil:
		return s.admit(c.AdmitNode.Node, c.AdmitNode.Server, c.AdmitNode.Time, "")
	case c.RevokeNode != nil:
		return s.revokeNode(c.RevokeNode)
	case c.Submit != nil:
		return s.submit(c.Submit)
	case c.Start != nil:
		j, err := s.attempt(c.Start.ID, c.Start.Attempt)
		if err != nil {
			return err
		}
		if j.State != Pending {
			return fmt.Errorf("%w: job %s is %s", ErrStale, j.ID, j.State)
		}
		if c.Start.Run != "" && !ValidID(c.Start.Run) {
			return fmt.Errorf("%w: run %q", ErrBadCommand, c.Start.Run)
		}
		j.State, j.Started = Running, c.Start.Time
		if c.Start.Run != "" {
			j.Runs = append(j.Runs, c.Start.Run) // one per attempt: bounded by MaxRestarts
		}
		return nil
	case c.End != nil:
		e := c.End
		if e.State != Succeeded && e.State != Failed {
			return fmt.Errorf("%w: a job cannot end as %q", ErrBadCommand, e.State)
		}
		j, err := s.attempt(e.ID, e.Attempt)
		if err != nil {
			return err
		}
		j.State, j.Ended, j.Error, j.ExitCode = e.State, e.Time, cut(e.Error, MaxErrorLength), e.ExitCode
		return nil
	case c.Stop != nil:
		j, ok := s.jobs[c.Stop.ID]
		if !ok {
			return fmt.Errorf("%w: %q", ErrNoJob, c.Stop.ID)
		}
		if j.State.Ended() {
			return fmt.Errorf("%w: job %s has %s", ErrStale, j.ID, j.State)
		}
		j.State, j.Ended, j.Error = Stopped, c.Stop.Time, cut(cmp.Or(c.Stop.Reason, "stopped"), MaxErrorLength)
		return nil
	case c.Delete != nil:
		j, ok := s.jobs[c.Delete.ID]
		if !ok {
			return fmt.Errorf("%w: %q", ErrNoJob, c.Delete.ID)
		}
		if !j.State.Ended() {
			return fmt.Errorf("%w: job %s is %s; stop it first", ErrJobRunning, j.ID, j.State)
		}
		delete(s.jobs, j.ID)
		return nil
	case c.Restart != nil:
		r := c.Restart
		if !validNode(r.Node) {
			return fmt.Errorf("%w: node %q", ErrBadCommand, r.Node)
		}
		j, err := s.attempt(r.ID, r.Attempt)
		if err != nil {
			return err
		}
		if uint32(len(j.Restarts)) >= j.MaxRestarts {
			return fmt.Errorf("%w: job %s has no restarts left", ErrStale, j.ID)
		}
		j.Restarts = append(j.Restarts, cut(r.Cause, 1024))
		j.Attempt++
		j.Node, j.State, j.Started = r.Node, Pending, 0
		return nil
	case c.AddModule != nil:
		return s.addModule(c.AddModule)
	case c.NameActor != nil:
		return s.nameActor(c.NameActor)
	case c.UnnameActor != nil:
		return s.unnameActor(c.UnnameActor)
	case c.ForgetNode != nil:
		return s.forgetNode(c.ForgetNode)
	case c.CreateTenant != nil:
		return s.createTenant(c.CreateTenant)
	case c.DeleteTenant != nil:
		return s.deleteTenant(c.DeleteTenant)
	case c.CreateToken != nil:
		return s.createToken(c.CreateToken)
	case c.RevokeToken != nil:
		return s.revokeToken(c.RevokeToken)
	case c.SetQuota != nil:
		return s.setQuota(c.SetQuota)
	case c.AddTenantKey != nil:
		return s.addTenantKey(c.AddTenantKey)
	case c.RemoveTenantKey != nil:
		return s.removeTenantKey(c.RemoveTenantKey)
	default:
		d := c.DeleteModule
		m, ok := s.modules[d.Digest]
		if !ok {
			return fmt.Errorf("%w: %q", ErrNoModule, d.Digest)
		}
		if d.Node != "" {
			m.Nodes = slices.DeleteFunc(m.Nodes, func(n string) bool { return n == d.Node })
			return nil
		}
		if d.Tenant != "" {
			i, found := slices.BinarySearch(m.Tenants, d.Tenant)
			if !found {
				return fmt.Errorf("%w: %q", ErrNoModule, d.Digest) // not the tenant's to see
			}
			for _, j := range s.jobs {
				if j.Digest == d.Digest && j.Tenant == d.Tenant && !j.State.Ended() {
					return fmt.Errorf("%w: job %s", ErrModuleInUse, j.ID)
				}
			}
			m.Tenants = slices.Delete(m.Tenants, i, i+1)
			if len(m.Tenants) > 0 || m.Operator {
				return nil // others still have it
			}
		}
		for _, j := range s.jobs {
			if j.Digest == d.Digest && !j.State.Ended() {
				return fmt.Errorf("%w: job %s", ErrModuleInUse, j.ID)
			}
		}
		delete(s.modules, d.Digest)
		return nil
	}
}

// attempt returns the job if it has not ended and is at the attempt.
func (s *State) attempt(id string, attempt uint32) (*Job, error) {
	j, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoJob, id)
	}
	if j.State.Ended() || j.Attempt != attempt {
		return nil, fmt.Errorf("%w: job %s is %s at attempt %d, not %d", ErrStale, id, j.State, j.Attempt, attempt)
	}
	return j, nil
}

func validNode(s string) bool { return s != "" && len(s) <= MaxIDLength }

func (s *State) submit(c *Submit) error {
	switch {
	case !ValidJobKey(c.ID):
		return fmt.Errorf("%w: job ID %q (1 to 64 letters, digits, '-', '_' or '.', after \"tenant:\" for a tenant's job)", ErrBadCommand, c.ID)
	case JobKey(c.Tenant, JobName(c.ID)) != c.ID:
		return fmt.Errorf("%w: job %q of tenant %q: a tenant's job is keyed \"tenant:name\", the operator's by its name", ErrBadCommand, c.ID, c.Tenant)
	case !ValidDigest(c.Digest):
		return fmt.Errorf("%w: module digest %q", ErrBadCommand, c.Digest)
	case !validNode(c.Node):
		return fmt.Errorf("%w: node %q", ErrBadCommand, c.Node)
	case len(c.Args) > MaxArgs:
		return fmt.Errorf("%w: %d arguments, at most %d", ErrBadCommand, len(c.Args), MaxArgs)
	case c.MaxRestarts > MaxRestarts:
		return fmt.Errorf("%w: %d restarts, at most %d", ErrBadCommand, c.MaxRestarts, MaxRestarts)
	case c.Tenant != "" && !ValidID(c.Tenant), c.Owner != "" && !ValidID(c.Owner):
		return fmt.Errorf("%w: tenant %q or owner %q", ErrBadCommand, c.Tenant, c.Owner)
	}
	size := 0
	for _, a := range c.Args {
		size += len(a)
	}
	if size > MaxArgBytes {
		return fmt.Errorf("%w: %d bytes of arguments, at most %d", ErrBadCommand, size, MaxArgBytes)
	}
	if _, ok := s.jobs[c.ID]; ok {
		return fmt.Errorf("%w: %q", ErrJobExists, c.ID)
	}
	if c.Tenant != "" {
		if err := s.checkQuota(c.Tenant); err != nil {
			return err
		}
		if err := s.checkRunnable(c.Tenant, c.Digest); err != nil {
			return err
		}
	}
	if len(s.jobs) >= MaxJobs {
		// Evict the job that ended first (then by ID: deterministic).
		var oldest *Job
		for _, j := range s.jobs {
			if j.State.Ended() && (oldest == nil || j.Ended < oldest.Ended || j.Ended == oldest.Ended && j.ID < oldest.ID) {
				oldest = j
			}
		}
		if oldest == nil {
			return fmt.Errorf("%w: %d", ErrTooManyJobs, len(s.jobs))
		}
		delete(s.jobs, oldest.ID)
	}
	s.jobs[c.ID] = &Job{ID: c.ID, Digest: c.Digest, Args: slices.Clone(c.Args), Node: c.Node, State: Pending,
		Submitted: c.Time, Attempt: 1, MaxRestarts: c.MaxRestarts, Tenant: c.Tenant, Owner: c.Owner}
	return nil
}

func (s *State) addModule(c *AddModule) error {
	switch {
	case !ValidDigest(c.Digest):
		return fmt.Errorf("%w: module digest %q", ErrBadCommand, c.Digest)
	case !validNode(c.Node):
		return fmt.Errorf("%w: node %q", ErrBadCommand, c.Node)
	case c.Size < 0 || len(c.Name) > 256:
		return fmt.Errorf("%w: module size %d or name of %d bytes", ErrBadCommand, c.Size, len(c.Name))
	case c.Tenant != "" && !ValidID(c.Tenant):
		return fmt.Errorf("%w: tenant %q", ErrBadCommand, c.Tenant)
	case len(c.Signature) > 1024:
		return fmt.Errorf("%w: a signature of %d bytes", ErrBadCommand, len(c.Signature))
	}
	signer, err := s.checkSigned(c)
	if err != nil {
		return err
	}
	m, ok := s.modules[c.Digest]
	if !ok {
		if len(s.modules) >= MaxModules {
			return fmt.Errorf("%w: %d; delete some (fabric module delete)", ErrTooManyModule, len(s.modules))
		}
		m = &Module{Digest: c.Digest, Size: c.Size, Name: c.Name, Added: c.Time}
		s.modules[c.Digest] = m
	}
	if c.Name != "" && (m.Name == "" || c.Tenant == "") {
		m.Name = c.Name // a tenant names a module no one named: it does not rename another's
	}
	m.Uploaded = m.Uploaded || c.Uploaded
	if c.Copy {
		// a node's copy: no claim
	} else if c.Tenant == "" {
		m.Operator = true
	} else if i, found := slices.BinarySearch(m.Tenants, c.Tenant); !found && len(m.Tenants) < MaxTenants {
		m.Tenants = slices.Insert(m.Tenants, i, c.Tenant)
	}
	if i, found := slices.BinarySearch(m.Signers, signer); signer != "" && !found && len(m.Signers) < MaxTenants {
		m.Signers = slices.Insert(m.Signers, i, signer)
	}
	if i, found := slices.BinarySearch(m.Nodes, c.Node); !found {
		if len(m.Nodes) >= 1024 {
			return nil // enough holders are known
		}
		m.Nodes = slices.Insert(m.Nodes, i, c.Node)
	}
	return nil
}
