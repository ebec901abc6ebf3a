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

// Deployment returns the deployment of key.
func (s *State) Deployment(key string) (Deployment, bool) {
	d, ok := s.deployments[key]
	if !ok {
		return Deployment{}, false
	}
	out := *d
	out.Resources = maps.Clone(d.Resources)
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
