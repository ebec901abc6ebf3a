//go:build linux

package fabric

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
)

func TestAssign(t *testing.T) {
	nodes := []string{"c", "a", "b"}
	for _, c := range []struct {
		replicas int
		want     int // the most any node gets
	}{{0, 0}, {1, 1}, {3, 1}, {4, 2}, {7, 3}} {
		got := assign("acme:model", c.replicas, nodes)
		total, most := 0, 0
		for _, n := range got {
			total += n
			most = max(most, n)
		}
		if total != c.replicas || most != c.want {
			t.Errorf("%d replicas over 3 nodes: %v", c.replicas, got)
		}
		if again := assign("acme:model", c.replicas, []string{"b", "c", "a"}); fmt.Sprint(again) != fmt.Sprint(got) {
			t.Errorf("the order of the members changed the assignment: %v, then %v", got, again)
		}
	}
	if len(assign("k", 3, nil)) != 0 {
		t.Error("replicas assigned with no node alive")
	}
}

// serveAgent starts an agent with an ingress and uploads the serve guest
// with the admin client it returns.
func serveAgent(t *testing.T) (*Agent, *Client, ModuleInfo) {
	t.Helper()
	as, admin, mod := serveCluster(t, 1)
	return as[0], admin, mod
}

// serveCluster starts n agents with ingresses in one cluster, and
// uploads the serve guest with the operator's token.
func serveCluster(t *testing.T, n int) ([]*Agent, *Client, ModuleInfo) {
	t.Helper()
	serve := func(c *AgentConfig) { c.ServeAddr = "127.0.0.1:0" }
	as := []*Agent{startJobsAgent(t, serve)}
	for len(as) < n {
		as = append(as, joinAgent(t, as[0], serve))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := as[0].Client(as[0].APIToken())
	mod, err := admin.Upload(ctx, bytes.NewReader(guestBytes(t, "internal/testguests/serve")), "serve")
	if err != nil {
		t.Fatal(err)
	}
	return as, admin, mod
}

// servePost sends a request to an ingress and returns its status and body.
func servePost(t *testing.T, addr, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServe: the ModelDeployment of Ray Serve's example, three replicas
// spread over two agents, answers POST {"input": 42} with
// {"prediction": 84} through either agent's ingress; a route that is not
// public takes its tenant's token; unknown routes, oversized bodies and a
// deleted deployment get clear answers.
func TestServe(t *testing.T) {
	as, admin, mod := serveCluster(t, 2)
	a, b := as[0], as[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	acme := tenantClient(t, ctx, a, TenantInfo{Name: "acme"})
	three := 3
	if _, err := admin.Deploy(ctx, DeploymentSpec{Name: "model", Module: mod.Digest, Class: "Model", RoutePrefix: "/model", NumReplicas: &three, Public: true}); err != nil {
		t.Fatal(err)
	}
	var info DeploymentInfo
	waitFor(t, 60*time.Second, "three replicas of model on two nodes", func() bool {
		ds, err := admin.Deployments(ctx)
		if err != nil || len(ds) != 1 {
			return false
		}
		info = ds[0]
		return info.Running == 3 && len(info.Nodes) == 2 && info.Status == "HEALTHY"
	})
	if info.Name != "model" || info.RoutePrefix != "/model" || info.MaxOngoingRequests != 5 || info.Version != 1 {
		t.Fatalf("the deployment: %+v", info)
	}
	for _, ing := range []*Agent{a, b} {
		for i := range 10 {
			code, body := servePost(t, ing.IngressAddr(), "/model", "", fmt.Sprintf(`{"input": %d}`, 40+i))
			if code != 200 || body != fmt.Sprintf(`{"prediction":%d}`, 2*(40+i)) {
				t.Fatalf("through %s: %d %q", ing.ID, code, body)
			}
		}
	}
	if code, body := servePost(t, b.IngressAddr(), "/model/sub/path", "", `{"input": 42}`); code != 200 || body != `{"prediction":84}` {
		t.Fatalf("a path under the route: %d %q", code, body)
	}
	if code, body := servePost(t, a.IngressAddr(), "/model", "", `{"inp`); code != 400 || !strings.Contains(body, "want a JSON body") {
		t.Fatalf("the guest's 400: %d %q", code, body)
	}
	for _, c := range []struct {
		path, token, body string
		code              int
		says              string
	}{
		{"/nothing", "", "", 404, "no deployment serves /nothing"},
		{"/modelx", "", "", 404, "no deployment serves /modelx"},
		{"/model", "", strings.Repeat("x", MaxServeBody+1), 413, "past 1048576 bytes"},
	} {
		if code, body := servePost(t, a.IngressAddr(), c.path, c.token, c.body); code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("POST %s: %d %q, want %d saying %q", c.path, code, body, c.code, c.says)
		}
	}

	// A tenant's route that is not public: its token opens it, another
	// tenant's does not see it.
	if _, err := acme.Upload(ctx, bytes.NewReader(guestBytes(t, "internal/testguests/serve")), "serve"); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.Deploy(ctx, DeploymentSpec{Name: "echo", Module: mod.Digest, Class: "Echo", RoutePrefix: "/acme/echo"}); err != nil {
		t.Fatal(err)
	}
	globex := tenantClient(t, ctx, a, TenantInfo{Name: "globex"})
	waitFor(t, 60*time.Second, "acme's echo answers", func() bool {
		code, _ := servePost(t, b.IngressAddr(), "/acme/echo", acme.Token, "hi")
		return code == 200
	})
	for _, c := range []struct {
		token string
		code  int
	}{{"", 401}, {"fabric_wrong", 401}, {globex.Token, 404}, {acme.Token, 200}, {a.APIToken(), 200}} {
		if code, body := servePost(t, a.IngressAddr(), "/acme/echo", c.token, "hi"); code != c.code {
			t.Errorf("acme's echo with token %.12q: %d %q, want %d", c.token, code, body, c.code)
		}
	}
	// A flood of well-formed tokens that open nothing, at the ingress:
	// each is refused, and the API's own token checks go on meanwhile.
	var flood sync.WaitGroup
	refused := make(chan int, 200)
	for i := range 200 {
		flood.Go(func() {
			bogus := acme.Token[:len(acme.Token)-4] + fmt.Sprintf("%04d", i)
			code, _ := servePost(t, a.IngressAddr(), "/acme/echo", bogus, "hi")
			refused <- code
		})
	}
	for range 5 {
		if _, err := acme.Whoami(ctx); err != nil {
			t.Fatalf("the API during a flood of bad tokens at the ingress: %v", err)
		}
	}
	flood.Wait()
	close(refused)
	for code := range refused {
		if code != 401 && code != 503 {
			t.Fatalf("a bogus token at the ingress: %d", code)
		}
	}
	if ds, err := globex.Deployments(ctx); err != nil || len(ds) != 0 {
		t.Fatalf("globex lists %+v, %v", ds, err)
	}
	if ds, err := acme.Deployments(ctx); err != nil || len(ds) != 1 || ds[0].Name != "echo" {
		t.Fatalf("acme lists %+v, %v", ds, err)
	}
	if _, err := globex.Deploy(ctx, DeploymentSpec{Name: "steal", Module: mod.Digest, Class: "Echo", RoutePrefix: "/acme/echo"}); err == nil {
		t.Fatal("globex took acme's route (or deployed a module it never stored)")
	}

	// Deleted: the route is gone from every ingress.
	if err := admin.DeleteDeployment(ctx, "model"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "model gone from both ingresses", func() bool {
		c1, _ := servePost(t, a.IngressAddr(), "/model", "", `{"input": 1}`)
		c2, _ := servePost(t, b.IngressAddr(), "/model", "", `{"input": 1}`)
		return c1 == 404 && c2 == 404
	})
}

// TestServeReplicaKilled: the worker process of a deployment's replicas
// killed under load: every request is answered, 200 or 503 (retryable),
// none hangs, and the replicas come back.
func TestServeReplicaKilled(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	two := 2
	if _, err := admin.Deploy(ctx, DeploymentSpec{Name: "slow", Module: mod.Digest, Class: "Slow", NumReplicas: &two, MaxOngoingRequests: 10, Public: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "two replicas of slow", func() bool {
		ds, err := admin.Deployments(ctx)
		return err == nil && len(ds) == 1 && ds[0].Status == "HEALTHY"
	})
	hc := &http.Client{Timeout: 30 * time.Second}
	stop := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var after200 int // answered after the kill
	killed := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				resp, err := hc.Post("http://"+a.IngressAddr()+"/slow?ms=30", "text/plain", nil)
				if err != nil {
					t.Errorf("a request failed outright (or hung): %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				select {
				case <-killed:
					if resp.StatusCode == 200 {
						after200++
					}
				default:
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	ws, err := admin.Workers(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, w := range ws.Workers {
		if w.Kind == "actor" && w.Running == "Slow" && w.Pid > 0 {
			pids[w.Pid] = true
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no worker process runs the replicas: %+v", ws.Workers)
	}
	for pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	close(killed)
	wg.Wait()
	t.Logf("answers by status: %v; 200s after the kill: %d", codes, after200)
	for code := range codes {
		if code != 200 && code != 503 {
			t.Errorf("a request answered %d", code)
		}
	}
	if codes[200] == 0 || after200 == 0 {
		t.Fatalf("no request answered after the kill: %v", codes)
	}
	waitFor(t, 30*time.Second, "the replicas back", func() bool {
		ds, err := admin.Deployments(ctx)
		return err == nil && len(ds) == 1 && ds[0].Running == 2
	})
}

// TestServeAgentLost: an agent that hosts replicas stops under load: the
// requests through the other agent's ingress are answered 200 or 503,
// none hangs, and the other agent takes the lost replicas.
func TestServeAgentLost(t *testing.T) {
	as, admin, mod := serveCluster(t, 2)
	a, b := as[0], as[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	four := 4
	if _, err := admin.Deploy(ctx, DeploymentSpec{Name: "model", Module: mod.Digest, Class: "Model", NumReplicas: &four, Public: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "four replicas on two nodes", func() bool {
		ds, err := admin.Deployments(ctx)
		return err == nil && len(ds) == 1 && ds[0].Running == 4 && len(ds[0].Nodes) == 2
	})
	hc := &http.Client{Timeout: 30 * time.Second}
	stop := time.Now().Add(8 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	late := 0 // answered 200 in the last two seconds
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				resp, err := hc.Post("http://"+a.IngressAddr()+"/model", "application/json", strings.NewReader(`{"input": 1}`))
				if err != nil {
					t.Errorf("a request failed outright (or hung): %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == 200 && time.Until(stop) < 2*time.Second {
					late++
				}
				mu.Unlock()
				if resp.StatusCode == 503 {
					time.Sleep(10 * time.Millisecond) // as a client honouring Retry-After would, sooner
				}
			}
		})
	}
	time.Sleep(time.Second)
	_ = b.Close()
	wg.Wait()
	t.Logf("answers by status: %v; 200s in the last 2 s: %d", codes, late)
	for code := range codes {
		if code != 200 && code != 503 {
			t.Errorf("a request answered %d", code)
		}
	}
	if late == 0 {
		t.Fatalf("no request answered once node %s was lost: %v", b.ID, codes)
	}
	waitFor(t, 30*time.Second, "a hosting all four", func() bool {
		ds, err := admin.Deployments(ctx)
		return err == nil && len(ds) == 1 && ds[0].Running == 4 && ds[0].Nodes[a.ID] == 4
	})
}

// TestServeBadRequests: clients that send headers slowly, or garbage, get
// 4xx answers (or are cut) and hold up nobody else's requests.
func TestServeBadRequests(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := admin.Deploy(ctx, DeploymentSpec{Name: "echo", Module: mod.Digest, Class: "Echo", Public: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "echo answers", func() bool {
		code, _ := servePost(t, a.IngressAddr(), "/echo", "", "x")
		return code == 200
	})
	// Fifty slow clients, each a connection with half a request line.
	for range 50 {
		c, err := net.Dial("tcp", a.IngressAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Le")); err != nil {
			t.Fatal(err)
		}
	}
	// A body announced and never sent in full.
	c, err := net.Dial("tcp", a.IngressAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc"))
	start := time.Now()
	for i := range 20 {
		if code, body := servePost(t, a.IngressAddr(), "/echo", "", fmt.Sprint(i)); code != 200 || !strings.HasSuffix(body, "body="+fmt.Sprint(i)) {
			t.Fatalf("a request beside the slow clients: %d %q", code, body)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("twenty requests beside the slow clients took %s", d)
	}
	for _, raw := range []string{
		"POST /echo HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",      // a space in a header name
		"POST /echo HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",          // a NUL in a value
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", // a negative length
		"GARBAGE\r\n\r\n", // not HTTP
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", // a length past int64
	} {
		c, err := net.Dial("tcp", a.IngressAddr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write([]byte(raw))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 4") {
			t.Errorf("%q: answered %q, %v; want a 4xx", raw, line, err)
		}
	}
	if code, _ := servePost(t, a.IngressAddr(), "/echo", "", "still"); code != 200 {
		t.Fatalf("after the bad requests: %d", code)
	}

}

// TestServeBatching: requests that arrive together at a deployment whose
// handler batches (sdk.NewBatcher, 4 at a time) run in full batches.
func TestServeBatching(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := admin.Deploy(ctx, DeploymentSpec{Name: "batched", Module: mod.Digest, Class: "Batched", MaxOngoingRequests: 16, Public: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "batched answers", func() bool {
		code, body := servePost(t, a.IngressAddr(), "/batched", "", "x")
		return code == 200 && body == "batch=1"
	})
	sizes := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			code, body := servePost(t, a.IngressAddr(), "/batched", "", "x")
			mu.Lock()
			defer mu.Unlock()
			if code != 200 {
				t.Errorf("a batched request: %d %q", code, body)
			}
			sizes[body]++
		})
	}
	wg.Wait()
	if sizes["batch=4"] < 4 {
		t.Fatalf("eight requests at once ran in batches %v, want at least one of 4", sizes)
	}
}

// TestServeAutoscaling: a deployment scaled to zero answers its first
// request after starting a replica; load raises its replicas to the most
// it may have, and they come back down, to zero, once the load stops.
func TestServeAutoscaling(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	up, down := 0.3, 1.0
	info, err := admin.Deploy(ctx, DeploymentSpec{Name: "slow", Module: mod.Digest, Class: "Slow", MaxOngoingRequests: 4, Public: true,
		AutoscalingConfig: &AutoscalingConfig{MinReplicas: 0, MaxReplicas: 3, TargetOngoingRequests: 1, UpscaleDelayS: &up, DownscaleDelayS: &down}})
	if err != nil {
		t.Fatal(err)
	}
	if info.NumReplicas != 0 || info.AutoscalingConfig == nil || info.AutoscalingConfig.MaxReplicas != 3 {
		t.Fatalf("deployed: %+v", info)
	}
	replicas := func() (wanted, running int) {
		ds, err := admin.Deployments(ctx)
		if err != nil || len(ds) != 1 {
			t.Fatalf("deployments: %+v, %v", ds, err)
		}
		return ds[0].NumReplicas, ds[0].Running
	}
	start := time.Now()
	if code, body := servePost(t, a.IngressAddr(), "/slow?ms=1", "", ""); code != 200 {
		t.Fatalf("the first request, at zero replicas: %d %q", code, body)
	}
	t.Logf("the first request at zero replicas answered in %s", time.Since(start))
	// Load: six requests in flight at a time, for a while.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code, _ := servePost(t, a.IngressAddr(), "/slow?ms=200", "", ""); code != 200 && code != 503 {
					failed.Add(1)
				}
			}
		})
	}
	waitFor(t, 30*time.Second, "three replicas under load", func() bool {
		w, r := replicas()
		return w == 3 && r == 3
	})
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed under load", failed.Load())
	}
	waitFor(t, 30*time.Second, "back to zero once the load stopped", func() bool {
		w, r := replicas()
		return w == 0 && r == 0
	})
	if code, body := servePost(t, a.IngressAddr(), "/slow?ms=1", "", ""); code != 200 {
		t.Fatalf("a request after scaling to zero again: %d %q", code, body)
	}
}

// TestServeQuota: a deployment's replicas are its tenant's actors and
// count against its quota: with max_actors 1, one of three replicas
// runs, and the two others wait (starting) while the one answers; once
// the quota is raised, all three run.
func TestServeQuota(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	acme := tenantClient(t, ctx, a, TenantInfo{Name: "acme", MaxActors: 1})
	waitUsageReport(t, a)
	three := 3
	if _, err := acme.Deploy(ctx, DeploymentSpec{Name: "model", Module: mod.Digest, Class: "Model", RoutePrefix: "/model", NumReplicas: &three, Public: true}); err != nil {
		t.Fatal(err)
	}
	var info DeploymentInfo
	waitFor(t, 30*time.Second, "one replica running, two starting", func() bool {
		ds, err := acme.Deployments(ctx)
		if err == nil && len(ds) == 1 {
			info = ds[0]
		}
		return info.Running == 1 && info.Starting == 2
	})
	if info.Status != "UPDATING" {
		t.Fatalf("the deployment held by its quota: %+v", info)
	}
	for i := range 20 {
		if code, body := servePost(t, a.IngressAddr(), "/model", "", fmt.Sprintf(`{"input": %d}`, i)); code != 200 || body != fmt.Sprintf(`{"prediction":%d}`, 2*i) {
			t.Fatalf("request %d to the one replica: %d %q", i, code, body)
		}
	}
	// Still held: the quota counts the replicas, and nothing else started.
	time.Sleep(1500 * time.Millisecond)
	if ds, err := acme.Deployments(ctx); err != nil || len(ds) != 1 || ds[0].Running != 1 || ds[0].Starting != 2 {
		t.Fatalf("after a while: %+v, %v", ds, err)
	}
	if _, err := admin.SetQuota(ctx, TenantInfo{Name: "acme", MaxActors: 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "three replicas running once the quota allows them", func() bool {
		ds, err := acme.Deployments(ctx)
		return err == nil && len(ds) == 1 && ds[0].Running == 3 && ds[0].Starting == 0 && ds[0].Status == "HEALTHY"
	})
}

// TestServeSeed: Ray Serve's example programs through real HTTP on a
// three-agent cluster: the ModelDeployment with three replicas, one on
// each agent, answering {"input": 42} with {"prediction": 84} through
// every agent's ingress; and the Pipeline composing the deployments
// "preprocessor" and "classifier", whose replicas it calls through
// deployment handles (sdk.GetDeploymentHandle), passing the features
// from one to the other by reference.
func TestServeSeed(t *testing.T) {
	serve := func(c *AgentConfig) { c.ServeAddr = "127.0.0.1:0" }
	a := startJobsAgent(t, serve)
	b := joinAgent(t, a, serve)
	c := joinAgent(t, a, serve)
	ingresses := []*Agent{a, b, c}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := a.Client(a.APIToken())
	acme := tenantClient(t, ctx, a, TenantInfo{Name: "acme"})
	mod, err := acme.Upload(ctx, bytes.NewReader(guestBytes(t, "internal/testguests/serve")), "serve")
	if err != nil {
		t.Fatal(err)
	}
	deploy := func(name, class, route string, replicas int) {
		t.Helper()
		if _, err := acme.Deploy(ctx, DeploymentSpec{Name: name, Module: mod.Digest, Class: class, RoutePrefix: route, NumReplicas: &replicas, Public: true}); err != nil {
			t.Fatal(err)
		}
	}
	healthy := func(what string, want map[string]int) {
		t.Helper()
		var ds []DeploymentInfo
		waitFor(t, 60*time.Second, what, func() bool {
			var err error
			if ds, err = acme.Deployments(ctx); err != nil {
				return false
			}
			ok := 0
			for _, d := range ds {
				if n, in := want[d.Name]; in && d.Status == "HEALTHY" && d.Running == n {
					ok++
				}
			}
			return ok == len(want)
		})
	}
	deploy("model", "Model", "/model", 3)
	healthy("three replicas of model", map[string]int{"model": 3})
	ds, err := admin.Deployments(ctx)
	if err != nil || len(ds) != 1 || len(ds[0].Nodes) != 3 {
		t.Fatalf("the model's replicas by node: %+v, %v", ds, err)
	}
	for _, ing := range ingresses {
		for i := range 5 {
			code, body := servePost(t, ing.IngressAddr(), "/model", "", fmt.Sprintf(`{"input": %d}`, 42+i))
			if code != 200 || body != fmt.Sprintf(`{"prediction":%d}`, 2*(42+i)) {
				t.Fatalf("model through %s: %d %q", ing.ID, code, body)
			}
		}
	}

	// Each node keeps its replicas' output: the model printed on all three.
	waitFor(t, 10*time.Second, "the model's output from its three nodes", func() bool {
		logs, err := acme.DeploymentLogs(ctx, "model")
		if err != nil || len(logs.Nodes) != 3 {
			return false
		}
		for _, out := range logs.Nodes {
			if !strings.Contains(out, "model: ") {
				return false
			}
		}
		return true
	})
	deploy("preprocessor", "Preprocessor", "/preprocessor", 2)
	// A deployment made a moment ago is routed at once by every ingress
	// (a route miss reads the deployments again): never a 404.
	if code, body := servePost(t, c.IngressAddr(), "/preprocessor", "", `[1]`); code == 404 {
		t.Fatalf("a deployment just made, through another agent: %d %q", code, body)
	}
	deploy("classifier", "Classifier", "/classifier", 2)
	deploy("pipeline", "Pipeline", "/pipeline", 2)
	healthy("the pipeline's deployments", map[string]int{"preprocessor": 2, "classifier": 2, "pipeline": 2})
	for _, ing := range ingresses {
		for i := range 10 {
			in, want := `{"input": [1, 2, 3]}`, `{"label":"positive (12)"}`
			if i%2 == 1 {
				in, want = `{"input": [1, -4]}`, `{"label":"negative (-6)"}`
			}
			if code, body := servePost(t, ing.IngressAddr(), "/pipeline", "", in); code != 200 || body != want {
				t.Fatalf("pipeline through %s: %d %q", ing.ID, code, body)
			}
		}
	}
	// The parts answer on their own routes too.
	if code, body := servePost(t, b.IngressAddr(), "/preprocessor", "", `[1, 2.5]`); code != 200 || body != `[2,5]` {
		t.Fatalf("preprocessor: %d %q", code, body)
	}
	// Another tenant's guest cannot reach acme's deployments by name: the
	// lookup is in its own tenant's deployments.
	globex := tenantClient(t, ctx, a, TenantInfo{Name: "globex"})
	gmod, err := globex.Upload(ctx, bytes.NewReader(guestBytes(t, "internal/testguests/serve")), "serve")
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	if _, err := globex.Deploy(ctx, DeploymentSpec{Name: "pipeline", Module: gmod.Digest, Class: "Pipeline", RoutePrefix: "/globex", NumReplicas: &one, Public: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "globex's pipeline", func() bool {
		ds, err := globex.Deployments(ctx)
		return err == nil && len(ds) == 1 && ds[0].Running == 1
	})
	if code, body := servePost(t, a.IngressAddr(), "/globex", "", `{"input": [1]}`); code != 500 || !strings.Contains(body, `no actor named "preprocessor"`) {
		t.Fatalf("globex's pipeline, which has no preprocessor of its own: %d %q", code, body)
	}
	if _, err := globex.DeploymentLogs(ctx, "model"); err == nil || !strings.Contains(err.Error(), "no deployment") {
		t.Fatalf("another tenant's logs of acme's model: %v", err)
	}
}

// TestServeStreaming: a deployment that streams (sdk.StreamingDeployment)
// has each chunk reach the client as it is written, through the ingress
// of the agent that hosts its replica and through another's (over a
// QUIC stream); its status and headers come first; a failure midway
// cuts the response short; a client that leaves stops the call; and a
// whole response past what a call's answer carries inline (300 KiB)
// comes from the node's store; and a stream may last longer than the
// time a request has to begin its answer.
func TestServeStreaming(t *testing.T) {
	as, admin, mod := serveCluster(t, 2)
	a, b := as[0], as[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	one := 1
	for _, d := range []DeploymentSpec{{Name: "ticker", Class: "Ticker", RoutePrefix: "/ticker"}, {Name: "big", Class: "Big", RoutePrefix: "/big"}} {
		d.Module, d.NumReplicas, d.Public = mod.Digest, &one, true
		if _, err := admin.Deploy(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "both deployments running", func() bool {
		ds, err := admin.Deployments(ctx)
		return err == nil && len(ds) == 2 && ds[0].Running == 1 && ds[1].Running == 1
	})
	for _, ing := range []*Agent{a, b} {
		// Five lines 300 ms apart: the first arrives long before the end.
		start := time.Now()
		resp, err := http.Get("http://" + ing.IngressAddr() + "/ticker?n=5&ms=300")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 201 || resp.Header.Get("X-Ticker") != "5" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("through %s: %s %v", ing.ID, resp.Status, resp.Header)
		}
		r := bufio.NewReader(resp.Body)
		var firstAt time.Duration
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if len(lines) == 0 {
				firstAt = time.Since(start)
			}
			lines = append(lines, strings.TrimSpace(line))
		}
		all := time.Since(start)
		resp.Body.Close()
		if strings.Join(lines, ",") != "tick 0,tick 1,tick 2,tick 3,tick 4" || all-firstAt < time.Second {
			t.Fatalf("through %s: %q, the first line after %v, the end after %v", ing.ID, lines, firstAt, all)
		}
		t.Logf("through %s: the first line after %v, the last after %v", ing.ID, firstAt, all)

		// A failure after two lines: the response ends early.
		resp, err = http.Get("http://" + ing.IngressAddr() + "/ticker?n=5&fail=2")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 || string(body) != "tick 0\ntick 1\n" || err == nil {
			t.Fatalf("a stream that fails midway through %s: %s %q, %v", ing.ID, resp.Status, body, err)
		}

		// A failure before any line: a plain 500.
		if code, body := servePost(t, ing.IngressAddr(), "/ticker?n=5&fail=0", "", ""); code != 500 || !strings.Contains(body, "asked to fail after 0 lines") {
			t.Fatalf("a stream that fails at once through %s: %d %q", ing.ID, code, body)
		}

		// A client that leaves after one line of a long stream.
		resp, err = http.Get("http://" + ing.IngressAddr() + "/ticker?n=100000&ms=5&pad=1000")
		if err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, "tick 0") {
			t.Fatalf("the long stream through %s: %q, %v", ing.ID, line, err)
		}
		resp.Body.Close()

		// 300 KiB whole.
		code, body300 := servePost(t, ing.IngressAddr(), "/big?kib=300", "", "")
		if code != 200 || len(body300) != 300<<10 || body300[:3] != "abc" || body300[len(body300)-1] != byte('a'+(300<<10-1)%26) {
			t.Fatalf("300 KiB through %s: %d, %d bytes", ing.ID, code, len(body300))
		}
	}
	// The streams the clients left were stopped: no item comes after a
	// moment, nothing is held, and the replica answers.
	orphans := func() int64 {
		n := int64(0)
		for _, ag := range []*Agent{a, b} {
			if rs := ag.localSet("ticker"); rs != nil {
				n += rs.orphans.Load()
			}
		}
		return n
	}
	time.Sleep(300 * time.Millisecond)
	before := orphans()
	time.Sleep(500 * time.Millisecond)
	t.Logf("items that came after their clients left: %d", before)
	if after := orphans(); after != before {
		t.Fatalf("the streams the clients left go on: %d items after they left, then %d", before, after)
	}
	waitFor(t, 20*time.Second, "no request in flight", func() bool {
		ds, err := admin.Deployments(ctx)
		if err != nil {
			return false
		}
		for _, d := range ds {
			if d.Ongoing != 0 {
				return false
			}
		}
		return true
	})
	if code, body := servePost(t, b.IngressAddr(), "/ticker?n=2", "", ""); code != 201 || body != "tick 0\ntick 1\n" {
		t.Fatalf("after the clients left: %d %q", code, body)
	}
	// The answer's time bound ends at its first item: a stream goes on
	// past it (here 1 s, the stream 2 s), through both ingresses.
	for _, ag := range []*Agent{a, b} {
		ag.serveTimeout.Store(int64(time.Second))
	}
	for _, ing := range []*Agent{a, b} {
		if code, body := servePost(t, ing.IngressAddr(), "/ticker?n=5&ms=500", "", ""); code != 201 || body != "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n" {
			t.Fatalf("a stream longer than the answer's bound through %s: %d %q", ing.ID, code, body)
		}
	}
}

// deployTicker deploys the serve guest's Ticker (module digest) with one
// replica, and waits until it runs.
func deployTicker(ctx context.Context, t *testing.T, admin *Client, digest string, maxOngoing int) {
	t.Helper()
	one := 1
	if _, err := admin.Deploy(ctx, DeploymentSpec{Name: "ticker", Module: digest, Class: "Ticker", RoutePrefix: "/ticker", NumReplicas: &one,
		MaxOngoingRequests: maxOngoing, Public: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the ticker running", func() bool {
		ds, err := admin.Deployments(ctx)
		return err == nil && len(ds) == 1 && ds[0].Running == 1
	})
}

// slowStream asks the ticker at ingress for 100,000 lines of 64 KiB
// (6 GiB) on a connection with a small read buffer, and reads only the
// status line: a client that then reads nothing (closed with the test).
func slowStream(t *testing.T, ingress string) (net.Conn, string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", ingress)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	fmt.Fprintf(conn, "GET /ticker?n=100000&pad=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	return conn, line, err
}

// TestServeStreamSlowClient: a replica that streams faster than its
// client reads holds at most maxStreamBuffer of the response in the
// agent: past it, the call is stopped, and the agent and the replica
// answer other requests meanwhile and after.
func TestServeStreamSlowClient(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deployTicker(ctx, t, admin, mod.Digest, 0)
	// As fast as the replica makes them, to a client that reads nothing.
	conn, line, err := slowStream(t, a.IngressAddr())
	if err != nil || !strings.Contains(line, "201") {
		t.Fatalf("the stream's status line: %q, %v", line, err)
	}
	rs := a.localSet("ticker")
	// The agent stops the call once it holds maxStreamBuffer for the
	// client: no items come after (the request itself waits for its
	// client until the write timeout, holding nothing more).
	waitFor(t, 60*time.Second, "the call stopped", func() bool {
		rs.mu.Lock()
		var q *itemQueue
		for _, x := range rs.yields {
			q = x
		}
		rs.mu.Unlock()
		if q == nil {
			return false
		}
		q.mu.Lock()
		over := q.over
		q.mu.Unlock()
		before := rs.orphans.Load()
		time.Sleep(300 * time.Millisecond)
		return over && rs.orphans.Load() == before
	})
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if m.HeapInuse > 512<<20 {
		t.Fatalf("the agent's heap holds %d MiB", m.HeapInuse>>20)
	}
	if code, body := servePost(t, a.IngressAddr(), "/ticker?n=2", "", ""); code != 201 || body != "tick 0\ntick 1\n" {
		t.Fatalf("beside the slow client: %d %q", code, body)
	}
	conn.Close()
	waitFor(t, 30*time.Second, "the slow client's request ended", func() bool { return rs.ongoing() == 0 })
}

// TestServeStreamBudget: streams to clients that stop reading hold no
// more together than the ingress's byte budget (here 12 MiB: one stream
// holds 8 at most of its own): past it a call is stopped, or a request
// refused (503), and every byte is given back once the requests end.
func TestServeStreamBudget(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deployTicker(ctx, t, admin, mod.Digest, 8)
	a.serveBudget.max = 12 << 20
	rs := a.localSet("ticker")
	seen := map[*itemQueue]bool{}
	look := func() (running int) {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		for _, q := range rs.yields {
			seen[q] = true
			q.mu.Lock()
			if !q.over {
				running++
			}
			q.mu.Unlock()
		}
		if used := a.serveBudget.used.Load(); used > a.serveBudget.max {
			t.Fatalf("the streams hold %d bytes, past the budget of %d", used, a.serveBudget.max)
		}
		return running
	}
	refused := 0
	var conns []net.Conn
	for range 3 {
		conn, line, err := slowStream(t, a.IngressAddr())
		switch {
		case err == nil && strings.Contains(line, "503"):
			refused++
		case err != nil || !strings.Contains(line, "201"):
			t.Fatalf("a stream's status line: %q, %v", line, err)
		}
		look()
		conns = append(conns, conn)
	}
	waitFor(t, 60*time.Second, "the calls stopped", func() bool {
		running := look()
		before := rs.orphans.Load()
		time.Sleep(300 * time.Millisecond)
		return running == 0 && rs.orphans.Load() == before
	})
	exhausted := 0
	for q := range seen {
		q.mu.Lock()
		if q.exhausted {
			exhausted++
		}
		q.mu.Unlock()
	}
	if exhausted+refused == 0 {
		t.Fatalf("%d streams, none stopped by the budget nor refused", len(seen))
	}
	t.Logf("%d streams ran, %d stopped by the budget, %d refused", len(seen), exhausted, refused)
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 30*time.Second, "the requests ended", func() bool { return rs.ongoing() == 0 })
	waitFor(t, 10*time.Second, "every byte given back", func() bool { return a.serveBudget.used.Load() == 0 })
	a.serveBudget.max = serveBudget
	if code, body := servePost(t, a.IngressAddr(), "/ticker?n=2", "", ""); code != 201 || body != "tick 0\ntick 1\n" {
		t.Fatalf("after: %d %q", code, body)
	}
}

// TestDesiredReplicas: the load at target each, within the bounds, and
// one at least while requests come, however quick.
func TestDesiredReplicas(t *testing.T) {
	as := controlstate.Autoscaling{MinReplicas: 0, MaxReplicas: 5, TargetOngoing: 2}
	for _, c := range []struct {
		load   float64
		active bool
		want   int
	}{
		{0, false, 0}, {0, true, 1}, {0.1, false, 1}, {2, true, 1}, {2.1, true, 2}, {9, true, 5}, {100, false, 5},
	} {
		if got := desiredReplicas(as, c.load, c.active); got != c.want {
			t.Errorf("load %v, active %v: %d replicas, want %d", c.load, c.active, got, c.want)
		}
	}
	as.MinReplicas = 2
	if got := desiredReplicas(as, 0, false); got != 2 {
		t.Errorf("below the minimum: %d", got)
	}
}

// TestServeCompositionAutoscaling: a deployment called only through
// handles (the pipeline's preprocessor and classifier, autoscaled from
// zero) counts those calls as its load: it wakes for them, stays up
// while they come, however quick each is, and goes back to zero once
// they stop.
func TestServeCompositionAutoscaling(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	down := 0.5
	for _, d := range []DeploymentSpec{{Name: "preprocessor", Class: "Preprocessor"}, {Name: "classifier", Class: "Classifier"}} {
		d.Module, d.RoutePrefix = mod.Digest, "/"+d.Name
		d.AutoscalingConfig = &AutoscalingConfig{MinReplicas: 0, MaxReplicas: 2, DownscaleDelayS: &down}
		if _, err := admin.Deploy(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	one := 1
	if _, err := admin.Deploy(ctx, DeploymentSpec{Name: "pipeline", Module: mod.Digest, Class: "Pipeline", RoutePrefix: "/pipeline", NumReplicas: &one, Public: true}); err != nil {
		t.Fatal(err)
	}
	info := func(name string) DeploymentInfo {
		ds, err := admin.Deployments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Name == name {
				return d
			}
		}
		return DeploymentInfo{NumReplicas: -1}
	}
	replicas := func(name string) int { return info(name).NumReplicas }
	waitFor(t, 60*time.Second, "the pipeline running", func() bool { return info("pipeline").Running == 1 })
	// Requests until the parts have been up for 2.5 s, five times the
	// downscale delay.
	var failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code, body := servePost(t, a.IngressAddr(), "/pipeline", "", `{"input": [1, 2]}`); code != 200 || body != `{"label":"positive (6)"}` {
					failed.Add(1)
					t.Logf("%d %q", code, body)
				}
			}
		})
	}
	waitFor(t, 30*time.Second, "the parts woken by the pipeline's calls", func() bool {
		return replicas("preprocessor") >= 1 && replicas("classifier") >= 1
	})
	lowest := 10
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		lowest = min(lowest, replicas("preprocessor"), replicas("classifier"))
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || lowest < 1 {
		t.Fatalf("under load through the pipeline: %d requests failed, the parts went down to %d replicas", failed.Load(), lowest)
	}
	waitFor(t, 30*time.Second, "the parts back to zero once the load stopped", func() bool {
		return replicas("preprocessor") == 0 && replicas("classifier") == 0
	})
}

// TestServeBudget: the bytes an ingress holds for requests and whole
// responses are bounded together: clients that take large responses and
// read nothing fill the budget, and the next large response gets a quick
// 503 with Retry-After instead of more of the agent's memory; once they
// go, requests are answered again.
func TestServeBudget(t *testing.T) {
	a, admin, mod := serveAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a.serveBudget.max = 33 << 20 // the test's: two responses of 16 MiB, and a little
	one := 1
	if _, err := admin.Deploy(ctx, DeploymentSpec{Name: "big", Module: mod.Digest, Class: "Big", RoutePrefix: "/big", NumReplicas: &one, Public: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "big running", func() bool {
		ds, err := admin.Deployments(ctx)
		return err == nil && len(ds) == 1 && ds[0].Running == 1
	})
	var stuck []net.Conn
	for range 2 { // 16 MiB each, never read (the kernel takes a few MiB of each)
		conn, err := net.Dial("tcp", a.IngressAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4 << 10)
		}
		fmt.Fprintf(conn, "GET /big?kib=16384 HTTP/1.1\r\nHost: x\r\n\r\n")
		stuck = append(stuck, conn)
	}
	waitFor(t, 20*time.Second, "the budget held by the stuck clients", func() bool { return a.serveBudget.used.Load() >= 32<<20 })
	req, _ := http.NewRequest(http.MethodGet, "http://"+a.IngressAddr()+"/big?kib=2048", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "holds the most") {
		t.Fatalf("past the budget: %s %q", resp.Status, body)
	}
	for _, c := range stuck {
		c.Close()
	}
	waitFor(t, 40*time.Second, "the budget given back", func() bool { return a.serveBudget.used.Load() == 0 })
	if code, body := servePost(t, a.IngressAddr(), "/big?kib=1", "", ""); code != 200 || len(body) != 1024 {
		t.Fatalf("after the stuck clients went: %d, %d bytes", code, len(body))
	}
}
