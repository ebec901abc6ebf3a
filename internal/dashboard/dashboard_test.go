package dashboard

import (
	"regexp"
	"strings"
	"testing"
)

// TestPagesMatchScript: every API path app.js requests is one a page in
// Pages requests, so that the scale benchmark times what the pages send.
func TestPagesMatchScript(t *testing.T) {
	b, err := static.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{"/v1/whoami": true} // the login's, not a page's
	for _, p := range Pages {
		for _, r := range p.Requests {
			listed[strings.SplitN(strings.ReplaceAll(r, "{job}", ""), "?", 2)[0]] = true
		}
	}
	// The script's paths: string literals starting /v1/, up to a quote.
	paths := regexp.MustCompile(`"(/v1/[^"?]*)`).FindAllStringSubmatch(string(b), -1)
	if len(paths) == 0 {
		t.Fatal("no /v1/ path found in app.js")
	}
	for _, m := range paths {
		if !listed[m[1]] {
			t.Errorf("app.js requests %s, which no page in Pages lists", m[1])
		}
	}
}
