// Package dashboard is the web dashboard every agent serves on its HTTP
// address: static files embedded in the binary (no build step, no
// dependencies), a page that asks for an API token and keeps it in the
// tab's session storage, and views of the cluster that read the agent's
// API (/v1/...) with that token, refreshed every two seconds. The files
// hold no data: what a page shows is what the token may see.
package dashboard
