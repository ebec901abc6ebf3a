#!/usr/bin/env bash
# Starts three agents on loopback (the third labelled tier=edge), submits
# examples/cluster to the first, and stops the agents it started.
# Usage: demo.sh FABRIC-BINARY CLUSTER.wasm
set -euo pipefail
fabric=$1
module=$2
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

start() { # start NAME [flags...]: runs an agent, waits for its addresses
	local name=$1
	shift
	"$fabric" agent --data-dir "$work/$name" --gossip-addr 127.0.0.1:0 --quic-addr 127.0.0.1:0 \
		--http-addr 127.0.0.1:0 --num-cpus 1 "$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		grep -q '^Add a node:' "$work/$name.log" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "agent $name did not start:" >&2
	cat "$work/$name.log" >&2
	exit 1
}
field() { grep "^  $2:" "$work/$1.log" | awk '{print $NF}'; }

start a
api=$(field a "HTTP API")
export FABRIC_TOKEN_FILE="$work/a/api-token" # the cluster's admin token, which a wrote
export FABRIC_CA="$work/a/cluster/ca.pem"     # the API is served over TLS with the cluster's CA
# One join token per node: each admits one node, once.
"$fabric" join-token create --address "$api" --save "$work/b.token"
"$fabric" join-token create --address "$api" --save "$work/c.token"
start b --token-file "$work/b.token"
start c --token-file "$work/c.token" --labels tier=edge
sleep 1 # let gossip reach every agent
echo "three agents on loopback: $(cat "$work"/*/node-id | tr '\n' ' ')"
"$fabric" submit "$module" --address "$api"
