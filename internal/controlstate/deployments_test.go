package controlstate

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestValidRoute(t *testing.T) {
	for _, c := range []struct {
		route string
		ok    bool
	}{
		{"/", true}, {"/model", true}, {"/a/b-c/d_e.f~g", true}, {"", false}, {"model", false}, {"/model/", false},
		{"//", false}, {"/a//b", false}, {"/a/../b", false}, {"/./a", false}, {"/a b", false}, {"/a?x", false}, {"/é", false},
		{"/" + strings.Repeat("a", 300), false},
	} {
		if got := ValidRoute(c.route); got != c.ok {
			t.Errorf("ValidRoute(%q) = %v, want %v", c.route, got, c.ok)
		}
	}
}

// TestDeployments: a deployment is put, replaced with its version bumped,
// refused when malformed or on another's route, kept in snapshots and
// deleted.
func TestDeployments(t *testing.T) {
	s := New()
	mod := strings.Repeat("ab", 32)
	if err := s.Apply(Command{AddModule: &AddModule{Digest: mod, Node: "n1"}}); err != nil {
		t.Fatal(err)
	}
	model := Deployment{Key: "acme:model", Tenant: "acme", Digest: mod, Class: "Model", Route: "/model", Replicas: 3, MaxOngoing: 5,
		Resources: map[string]float64{"CPU": 0.5}}
	put := func(d Deployment, at int64) error {
		return s.Apply(Command{PutDeployment: &PutDeployment{Deployment: d, Time: at}})
	}
	if err := put(model, 100); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*Deployment)
		want error
	}{
		{"the key is another tenant's", func(d *Deployment) { d.Key = "globex:model" }, ErrBadCommand},
		{"a bad name", func(d *Deployment) { d.Key = "acme:a b" }, ErrBadCommand},
		{"a bad digest", func(d *Deployment) { d.Digest = "xyz" }, ErrBadCommand},
		{"an unknown module", func(d *Deployment) { d.Digest = strings.Repeat("cd", 32) }, ErrNoModule},
		{"a bad class", func(d *Deployment) { d.Class = "" }, ErrBadCommand},
		{"a bad route", func(d *Deployment) { d.Route = "/model/" }, ErrBadCommand},
		{"negative replicas", func(d *Deployment) { d.Replicas = -1 }, ErrBadCommand},
		{"too many replicas", func(d *Deployment) { d.Replicas = MaxReplicas + 1 }, ErrBadCommand},
		{"no ongoing requests", func(d *Deployment) { d.MaxOngoing = 0 }, ErrBadCommand},
		{"a negative resource", func(d *Deployment) { d.Resources = map[string]float64{"CPU": -1} }, ErrBadCommand},
		{"another's route", func(d *Deployment) { d.Key, d.Tenant = "globex:m", "globex" }, ErrRouteTaken},
	} {
		d := model
		c.edit(&d)
		if err := put(d, 200); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	model.Replicas = 5
	if err := put(model, 300); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Deployment("acme:model")
	if !ok || got.Version != 2 || got.Created != 100 || got.Updated != 300 || got.Replicas != 5 {
		t.Fatalf("replaced: %+v", got)
	}
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Deployments(), s.Deployments()) || len(r.Deployments()) != 1 {
		t.Fatalf("restored %+v, want %+v", r.Deployments(), s.Deployments())
	}
	if err := s.Apply(Command{DeleteDeployment: &DeleteDeployment{Key: "acme:model"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Command{DeleteDeployment: &DeleteDeployment{Key: "acme:model"}}); !errors.Is(err, ErrNoDeployment) {
		t.Fatalf("deleted twice: %v", err)
	}
	// Autoscaling: bounds checked; a scale changes the replicas, not the
	// version; a scale for an older version is stale.
	auto := Deployment{Key: "auto", Digest: mod, Class: "Model", Route: "/auto", Replicas: 1, MaxOngoing: 5,
		Autoscaling: &Autoscaling{MinReplicas: 0, MaxReplicas: 4, TargetOngoing: 2}}
	for _, c := range []struct {
		name string
		edit func(*Autoscaling, *Deployment)
	}{
		{"max below min", func(a *Autoscaling, _ *Deployment) { a.MinReplicas, a.MaxReplicas = 3, 2 }},
		{"max zero", func(a *Autoscaling, _ *Deployment) { a.MaxReplicas = 0 }},
		{"no target", func(a *Autoscaling, _ *Deployment) { a.TargetOngoing = 0 }},
		{"starting outside", func(_ *Autoscaling, d *Deployment) { d.Replicas = 5 }},
		{"a negative delay", func(a *Autoscaling, _ *Deployment) { a.UpscaleDelay = -1 }},
	} {
		d := auto
		as := *auto.Autoscaling
		d.Autoscaling = &as
		c.edit(&as, &d)
		if err := put(d, 500); !errors.Is(err, ErrBadCommand) {
			t.Errorf("autoscaling, %s: %v", c.name, err)
		}
	}
	if err := put(auto, 500); err != nil {
		t.Fatal(err)
	}
	scale := func(n int, version uint64) error {
		return s.Apply(Command{ScaleDeployment: &ScaleDeployment{Key: "auto", Version: version, Replicas: n, Time: 600}})
	}
	if err := scale(0, 1); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Deployment("auto"); d.Replicas != 0 || d.Version != 1 || d.Updated != 600 {
		t.Fatalf("scaled to zero: %+v", d)
	}
	if err := scale(5, 1); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("past max: %v", err)
	}
	if err := scale(2, 7); !errors.Is(err, ErrStale) {
		t.Fatalf("for another version: %v", err)
	}
	if err := s.Apply(Command{ScaleDeployment: &ScaleDeployment{Key: "globex:m", Version: 1, Replicas: 1}}); !errors.Is(err, ErrNoDeployment) && !errors.Is(err, ErrBadCommand) {
		t.Fatalf("a deployment that does not autoscale: %v", err)
	}

	// The route is free again.
	model.Key, model.Tenant = "globex:m", "globex"
	if err := put(model, 400); err != nil {
		t.Fatal(err)
	}
}
