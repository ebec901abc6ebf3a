//go:build linux

package fabric

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/wasmfabric/fabric/internal/testrig"
)

// TestDashboardInBrowser drives the dashboard in a real headless
// Chromium (Debian's, which make test installs) against a real agent: log
// in, see the node, submit a job from the page and watch it finish with
// its output following live, see the overview's charts, an actor listed,
// open a failed task's error. It saves a screenshot of each page under
// bin/test-artifacts/dashboard.
func TestDashboardInBrowser(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("no chromium: make test installs Debian's (apt-get install chromium)")
	}
	a := startJobsAgent(t, func(c *AgentConfig) { c.historyStep = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := a.Client(a.APIToken())
	hostilePath := testrig.Guest(t, "internal/testguests/hostile")
	hostile := guestBytes(t, "internal/testguests/hostile")
	shots := filepath.Join(testrig.Root(t), "bin", "test-artifacts", "dashboard")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.WindowSize(1280, 860),
		// The agent's certificate is the cluster's CA's, which this
		// browser does not know; the test is of the page, not of TLS.
		chromedp.Flag("ignore-certificate-errors", true))...)
	defer cancelAlloc()
	b, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	type action = chromedp.Action[chromedp.Void]
	shot := func(name string) action {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		}
	}
	fail := func(what string, err error) {
		t.Helper()
		body, _ := chromedp.Run(b, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v\npage:\n%s", what, err, body)
	}
	// The first run starts the browser, which lives as long as its
	// context: b, not one with a step's timeout.
	if err := chromedp.Do(b, chromedp.Navigate("https://"+a.HTTPAddr()+"/")); err != nil {
		fail("open the dashboard", err)
	}
	step := func(what string, actions ...action) {
		t.Helper()
		sctx, cancel := context.WithTimeout(b, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			fail(what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(b, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			fail("read "+sel, err)
		}
		return s
	}
	css, xpath := func(s string) chromedp.CSS { return chromedp.CSS(s) }, func(s string) chromedp.Search { return chromedp.Search(s) }

	step("the login page", chromedp.WaitVisible(css("#login")), shot("login"))
	step("a wrong token", chromedp.SendKeys(css("#token"), "fabric_wrong"), chromedp.Click(css(`#login button[type="submit"]`)),
		chromedp.WaitVisible(xpath(`//p[@id="login-error"][contains(., "refused")]`)))
	step("log in", chromedp.SetValue(css("#token"), a.APIToken()), chromedp.Click(css(`#login button[type="submit"]`)),
		chromedp.WaitVisible(css(`section[data-page="overview"]`)))
	if who := text("#who"); who != "cluster admin" {
		t.Fatalf("logged in as %q", who)
	}

	// Jobs: one that fails a task, one that holds an actor.
	if _, err := admin.SubmitWith(ctx, hostile, []string{"panic"}, SubmitOptions{ID: "boom"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SubmitWith(ctx, hostile, []string{"markup"}, SubmitOptions{ID: "markup"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SubmitDetached(ctx, hostile, []string{"actors", "1", "60000"}, SubmitOptions{ID: "keeper"}); err != nil {
		t.Fatal(err)
	}
	// The overview: the failure counted, and the last hour's charts with
	// the tasks that ended (the agent samples every second here).
	step("the overview counts the failure", chromedp.WaitVisible(xpath(`//td[contains(., "panicky")]`)),
		chromedp.WaitVisible(css(`#chart-cpu svg polyline`)),
		chromedp.WaitVisible(xpath(`//div[@id="chart-ended"]//span[contains(@class, "s3")][not(contains(., ": 0"))]`)), shot("overview"))
	step("the node", chromedp.Navigate("https://"+a.HTTPAddr()+"/ui/#/nodes"),
		chromedp.WaitVisible(xpath(`//tr[td[contains(., "`+a.ID+`")]]/td[contains(., " ms")]`)), shot("nodes"))
	// A job submitted from the page: its output follows live, then it
	// succeeds.
	step("submit a job", chromedp.Navigate("https://"+a.HTTPAddr()+"/ui/#/jobs"), chromedp.WaitVisible(css("#submit-job")),
		chromedp.SetUploadFiles(css("#submit-module"), []string{hostilePath}),
		chromedp.SendKeys(css("#submit-id"), "ticker"), chromedp.SendKeys(css("#submit-args"), "ticks 40 100"),
		chromedp.Click(css(`#submit-job button[type="submit"]`)),
		chromedp.WaitVisible(xpath(`//h1[.="Job ticker"]`)))
	// Live: a line arrives while the job still runs.
	step("its output, live", chromedp.WaitVisible(xpath(`//pre[@id="job-log"][contains(., "tick 3")]`)))
	if st := text("#job-state"); !strings.Contains(st, "running") {
		t.Fatalf("the job's state while its output follows: %q", st)
	}
	step("it finishes", chromedp.WaitVisible(xpath(`//p[@id="job-state"]/span[.="succeeded"]`)),
		chromedp.WaitVisible(xpath(`//pre[@id="job-log"][@data-ended="true"][contains(., "ticks: done")]`)), shot("job-live"))
	if log := text("#job-log"); strings.Count(log, "tick ") != 40 {
		t.Fatalf("the job's output: %q", log)
	}
	step("the finished job", chromedp.Navigate("https://"+a.HTTPAddr()+"/ui/#/jobs"),
		chromedp.WaitVisible(xpath(`//tr[td[contains(., "boom")]]/td/span[contains(., "succeeded")]`)), shot("jobs"))
	step("the job's output", chromedp.Click(xpath(`//a[.="boom"]`)),
		chromedp.WaitVisible(xpath(`//pre[@id="job-log"][contains(., "get returned")]`)), shot("job"))
	step("the actor", chromedp.Navigate("https://"+a.HTTPAddr()+"/ui/#/actors"),
		chromedp.WaitVisible(xpath(`//tr[td[.="Keeper"]]/td/span[.="alive"]`)),
		chromedp.WaitVisible(xpath(`//div[@id="actor-counts"]/div[div[.="Alive"]]/div[@class="value"][.="1"]`)), shot("actors"))
	step("the failed task's error", chromedp.Navigate("https://"+a.HTTPAddr()+"/ui/#/tasks"),
		chromedp.WaitVisible(xpath(`//tr[td[.="panicky"]]`)),
		chromedp.WaitVisible(xpath(`//div[@id="task-counts"]/div[div[.="Failed"]]/div[@class="value"][.!="0"]`)),
		chromedp.Click(xpath(`//tr[td[.="panicky"]]`)),
		chromedp.WaitVisible(xpath(`//pre[@id="task-error"][contains(., "boom: the guest panicked")]`)), shot("task-error"))
	// A guest's task name and error that are HTML show as text, and run
	// nothing.
	step("a guest's markup", chromedp.Navigate("https://"+a.HTTPAddr()+"/ui/#/tasks"),
		chromedp.WaitVisible(xpath(`//td[starts-with(., "<img src=x onerror=")]`)),
		chromedp.Click(xpath(`//tr[td[starts-with(., "<img")]]`)),
		chromedp.WaitVisible(xpath(`//pre[@id="task-error"][contains(., "<script>")]`)), shot("markup"))
	if title, err := chromedp.Run(b, chromedp.Title()); err != nil || title != "Fabric" {
		t.Fatalf("the page's title after a guest's markup: %q, %v", title, err)
	}
	if n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("main img, main script, main b").length`)); err != nil || n != 0 {
		t.Fatalf("elements made from a guest's markup: %d, %v", n, err)
	}
	step("the objects", chromedp.Navigate("https://"+a.HTTPAddr()+"/ui/#/objects"),
		chromedp.WaitVisible(css(`section[data-page="objects"]`)), shot("objects"))
	if s := text("#status"); !strings.HasPrefix(s, "Updated") {
		t.Fatalf("the status line: %q", s)
	}
	if _, err := admin.StopJob(ctx, "keeper"); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
}
