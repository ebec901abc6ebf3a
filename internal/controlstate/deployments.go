package controlstate

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Deployment is a Serve deployment: a class of a module whose replicas
// (actors) answer the HTTP requests under a route prefix on every agent's
// ingress. Its key is "tenant:name" as a job's is (the operator's: its
// name); route prefixes are the cluster's, each held by one deployment.
type Deployment struct {
	Key    string `cbor:"1,keyasint" json:"key"`
	Tenant string `cbor:"2,keyasint,omitempty" json:"tenant,omitempty"`
	Digest string `cbor:"3,keyasint" json:"module"`
	Class  string `cbor:"4,keyasint" json:"class"`
	// Route is the path prefix it answers ("/" or "/a/b", no trailing
	// slash past the root): the longest prefix that matches wins.
	Route string `cbor:"5,keyasint" json:"route_prefix"`
	// Replicas is how many replicas run (with autoscaling, how many to
	// start with).
	Replicas int `cbor:"6,keyasint" json:"num_replicas"`
	// MaxOngoing bounds the requests a replica holds at once; past it on
	// every replica, the ingress answers 503.
	MaxOngoing int `cbor:"7,keyasint" json:"max_ongoing_requests"`
	// Resources each replica reserves (CPU, memory, GPU, custom).
	Resources map[string]float64 `cbor:"8,keyasint,omitempty" json:"resources,omitempty"`
	// Public routes take requests without a token.
	Public  bool   `cbor:"9,keyasint,omitempty" json:"public,omitempty"`
	Created int64  `cbor:"10,keyasint" json:"created"`
	Updated int64  `cbor:"11,keyasint" json:"updated"`
	Version uint64 `cbor:"12,keyasint" json:"version"`
	// Autoscaling, when set, lets the cluster change Replicas (without a
	// new version) between its bounds, from the requests in flight.
	Autoscaling *Autoscaling `cbor:"13,keyasint,omitempty" json:"autoscaling,omitempty"`
}

// Autoscaling bounds and paces a deployment's replicas: the cluster aims
// at TargetOngoing requests in flight per replica, waiting UpscaleDelay
// (milliseconds) of wanting more before it adds, DownscaleDelay of
// wanting fewer before it removes. MinReplicas 0 scales to zero: the
// first request then starts one.
type Autoscaling struct {
	MinReplicas    int     `cbor:"1,keyasint" json:"min_replicas"`
	MaxReplicas    int     `cbor:"2,keyasint" json:"max_replicas"`
	TargetOngoing  float64 `cbor:"3,keyasint" json:"target_ongoing_requests"`
	UpscaleDelay   int64   `cbor:"4,keyasint,omitempty" json:"upscale_delay_ms,omitempty"`
	DownscaleDelay int64   `cbor:"5,keyasint,omitempty" json:"downscale_delay_ms,omitempty"`
}

// ScaleDeployment sets an autoscaled deployment's replicas, at Version
// (a scale decided for an older version is stale).
type ScaleDeployment struct {
	Key      string `cbor:"1,keyasint"`
	Version  uint64 `cbor:"2,keyasint"`
	Replicas int    `cbor:"3,keyasint"`
	Time     int64  `cbor:"4,keyasint"`
}

// Limits of deployments.
const (
	MaxDeployments     = 1024
	MaxReplicas        = 1000
	MaxOngoingRequests = 10000
	maxRouteLength     = 256
)

// Errors of deployments.
var (
	ErrNoDeployment = errors.New("controlstate: no deployment with that name")
	ErrRouteTaken   = errors.New("controlstate: another deployment holds that route prefix")
)

// PutDeployment creates a deployment or replaces one of the same key
// (its Version is then one more, Created kept).
type PutDeployment struct {
	Deployment Deployment `cbor:"1,keyasint"`
	Time       int64      `cbor:"2,keyasint"`
}

// DeleteDeployment removes a deployment.
type DeleteDeployment struct {
	Key string `cbor:"1,keyasint"`
}

// ValidRoute reports whether r is a route prefix: "/", or "/" and
// segments of letters, digits, '-', '_', '.' and '~' separated by "/",
// with no trailing slash.
func ValidRoute(r string) bool {
	if r == "/" {
		return true
	}
	if len(r) < 2 || len(r) > maxRouteLength || r[0] != '/' || strings.HasSuffix(r, "/") {
		return false
	}
	for _, seg := range strings.Split(r[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
				return false
			}
		}
	}
	return true
}

func (s *State) putDeployment(c *PutDeployment) error {
	d := c.Deployment
	switch {
	case !ValidJobKey(d.Key) || JobKey(d.Tenant, JobName(d.Key)) != d.Key:
		return fmt.Errorf("%w: deployment %q of tenant %q (a name of 1 to 64 letters, digits, '-', '_' or '.')", ErrBadCommand, d.Key, d.Tenant)
	case !ValidDigest(d.Digest):
		return fmt.Errorf("%w: module digest %q", ErrBadCommand, d.Digest)
	case !ValidID(d.Class):
		return fmt.Errorf("%w: class %q", ErrBadCommand, d.Class)
	case !ValidRoute(d.Route):
		return fmt.Errorf("%w: route prefix %q: \"/\" or \"/name[/name...]\" without a trailing slash", ErrBadCommand, d.Route)
	case d.Replicas < 0 || d.Replicas > MaxReplicas:
		return fmt.Errorf("%w: %d replicas, 0 to %d", ErrBadCommand, d.Replicas, MaxReplicas)
	case d.MaxOngoing < 1 || d.MaxOngoing > MaxOngoingRequests:
		return fmt.Errorf("%w: max_ongoing_requests %d, 1 to %d", ErrBadCommand, d.MaxOngoing, MaxOngoingRequests)
	case len(d.Resources) > 16:
		return fmt.Errorf("%w: %d resources, at most 16", ErrBadCommand, len(d.Resources))
	}
	if as := d.Autoscaling; as != nil {
		switch {
		case as.MinReplicas < 0 || as.MaxReplicas < max(1, as.MinReplicas) || as.MaxReplicas > MaxReplicas:
			return fmt.Errorf("%w: autoscaling between %d and %d replicas: 0 <= min <= max, 1 <= max <= %d", ErrBadCommand, as.MinReplicas, as.MaxReplicas, MaxReplicas)
		case d.Replicas < as.MinReplicas || d.Replicas > as.MaxReplicas:
			return fmt.Errorf("%w: %d replicas to start with, outside autoscaling's %d to %d", ErrBadCommand, d.Replicas, as.MinReplicas, as.MaxReplicas)
		case !(as.TargetOngoing > 0 && as.TargetOngoing <= MaxOngoingRequests):
			return fmt.Errorf("%w: target_ongoing_requests %v: past 0, at most %d", ErrBadCommand, as.TargetOngoing, MaxOngoingRequests)
		case as.UpscaleDelay < 0 || as.DownscaleDelay < 0 || as.UpscaleDelay > 86_400_000 || as.DownscaleDelay > 86_400_000:
			return fmt.Errorf("%w: scaling delays of 0 to a day", ErrBadCommand)
		}
		c := *as
		d.Autoscaling = &c
	}
	for k, v := range d.Resources {
		if !ValidID(k) || v < 0 || v > 1e15 || v != v {
			return fmt.Errorf("%w: resource %q: %v", ErrBadCommand, k, v)
		}
	}
	if _, ok := s.modules[d.Digest]; !ok {
		return fmt.Errorf("%w: %s (upload it first)", ErrNoModule, d.Digest)
	}
	for _, o := range s.deployments {
		if o.Route == d.Route && o.Key != d.Key {
			return fmt.Errorf("%w: %s is %s's", ErrRouteTaken, d.Route, o.Key)
		}
	}
	old, exists := s.deployments[d.Key]
	if !exists && len(s.deployments) >= MaxDeployments {
		return fmt.Errorf("%w: %d deployments, at most %d", ErrBadCommand, len(s.deployments), MaxDeployments)
	}
	d.Resources = maps.Clone(d.Resources)
	d.Created, d.Updated, d.Version = c.Time, c.Time, 1
	if exists {
		d.Created, d.Version = old.Created, old.Version+1
	}
	s.deployments[d.Key] = &d
	return nil
}

func (s *State) scaleDeployment(c *ScaleDeployment) error {
	d, ok := s.deployments[c.Key]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrNoDeployment, c.Key)
	case d.Version != c.Version:
		return fmt.Errorf("%w: deployment %s is at version %d, the scale was for %d", ErrStale, c.Key, d.Version, c.Version)
	case d.Autoscaling == nil:
		return fmt.Errorf("%w: deployment %s does not autoscale", ErrBadCommand, c.Key)
	case c.Replicas < d.Autoscaling.MinReplicas || c.Replicas > d.Autoscaling.MaxReplicas:
		return fmt.Errorf("%w: %d replicas, outside %d to %d", ErrBadCommand, c.Replicas, d.Autoscaling.MinReplicas, d.Autoscaling.MaxReplicas)
	}
	d.Replicas, d.Updated = c.Replicas, c.Time
	return nil
}

// Deployment returns the deployment of key.
func (s *State) Deployment(key string) (Deployment, bool) {
	d, ok := s.deployments[key]
	if !ok {
		return Deployment{}, false
	}
	out := *d
	out.Resources = maps.Clone(d.Resources)
	if d.Autoscaling != nil {
		as := *d.Autoscaling
		out.Autoscaling = &as
	}
	return out, true
}

// Deployments lists the deployments, by key.
func (s *State) Deployments() []Deployment {
	out := make([]Deployment, 0, len(s.deployments))
	for _, k := range slices.Sorted(maps.Keys(s.deployments)) {
		d, _ := s.Deployment(k)
		out = append(out, d)
	}
	return out
}
