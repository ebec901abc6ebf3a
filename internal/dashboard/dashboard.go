package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// Handler serves the dashboard's files under Prefix, with headers that
// keep the page to itself: its own scripts and styles only, no framing,
// no referrer.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != Prefix {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// A Page is one of the dashboard's views and the API requests it sends
// at once each time it is drawn ({job} stands for the job shown): what
// the state API's scale benchmark times, page by page.
type Page struct {
	Name     string
	Requests []string
}

// Pages are the dashboard's views, as app.js draws them (TestPagesMatchScript
// checks that every request the script makes is listed here).
var Pages = []Page{
	// The overview asks for the whole hour when it opens (timed here),
	// then for the last 30 s at each refresh.
	{"overview", []string{"/v1/status", "/v1/jobs", "/v1/tasks/summary", "/v1/history"}},
	{"nodes", []string{"/v1/nodes", "/v1/history?window=30"}},
	{"jobs", []string{"/v1/jobs"}},
	// A job's page follows its output with one request kept open
	// (logs?follow=1); what it costs to open is the log's kept part.
	{"job", []string{"/v1/jobs/{job}", "/v1/tasks?limit=200&job={job}", "/v1/actors?limit=200&job={job}", "/v1/jobs/{job}/logs"}},
	{"tasks", []string{"/v1/tasks?limit=200", "/v1/tasks/summary"}},
	{"failed tasks", []string{"/v1/tasks?limit=200&state=failed", "/v1/tasks/summary"}},
	{"actors", []string{"/v1/actors?limit=500", "/v1/actors/summary"}},
	{"objects", []string{"/v1/objects?limit=500"}},
}
