# Fabric's build. `make demo` runs the quickstart on an embedded node;
# `make test` builds everything the tests need and runs them under -race.
GO        ?= go
BIN       := bin/fabric
EXAMPLES  := quickstart batches counter shared wait resources cluster
GUESTS    := $(notdir $(patsubst %/,%,$(dir $(wildcard internal/testguests/*/main.go))))
STATICCHECK_VERSION := v0.8.2

GO_SOURCES := $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum

# C guests build with Debian's clang and wasi-libc; `make c-toolchain`
# installs them when they are missing (CI runs as root).
CLANG     ?= clang
WASI_LIBC := /usr/lib/wasm32-wasi/libc.a

.PHONY: all build examples guests demo cluster-demo test check bench bench-check clean c-toolchain test-tools release

all: build examples

build: $(BIN)

$(BIN): $(GO_SOURCES)
	$(GO) build -buildvcs=auto -o $@ ./cmd/fabric

bin/examples/%.wasm: $(BIN) $(GO_SOURCES)
	@mkdir -p bin/examples
	$(BIN) build ./examples/$* -o $@

bin/testguests/%.wasm: $(BIN) $(GO_SOURCES)
	@mkdir -p bin/testguests
	$(BIN) build ./internal/testguests/$* -o $@

examples: $(addprefix bin/examples/,$(addsuffix .wasm,$(EXAMPLES))) bin/examples/c_add.wasm

c-toolchain:
	@if ! command -v $(CLANG) >/dev/null || [ ! -e $(WASI_LIBC) ] || [ ! -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a ]; then \
	  echo "installing the C guest toolchain (clang, lld, wasi-libc)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null; \
	fi

# wat2wasm (Debian's wabt) assembles the sandbox's hand-written test modules.
bin/wat2wasm:
	@mkdir -p bin
	@if ! command -v wat2wasm >/dev/null; then \
	  echo "installing wabt (wat2wasm)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wabt >/dev/null; \
	fi
	ln -sf "$$(command -v wat2wasm)" $@

bin/examples/c_add.wasm: examples/c/add.c | c-toolchain
	@mkdir -p bin/examples
	$(CLANG) --target=wasm32-wasi -mexec-model=reactor -O2 -o $@ $<

# -msimd128: wasm's 128-bit SIMD, which wazero compiles to SSE.
bin/testguests/cmatmul.wasm: internal/testguests/cmatmul/matmul.c | c-toolchain
	@mkdir -p bin/testguests
	$(CLANG) --target=wasm32-wasi -mexec-model=reactor -O3 -msimd128 -o $@ $<

bin/testguests/cactors.wasm: internal/testguests/cactors/actors.c | c-toolchain
	@mkdir -p bin/testguests
	$(CLANG) --target=wasm32-wasi -mexec-model=reactor -O2 -o $@ $<

guests: $(addprefix bin/testguests/,$(addsuffix .wasm,$(GUESTS))) bin/testguests/cmatmul.wasm bin/testguests/cactors.wasm

bench: build examples guests
	$(BIN) bench --update-doc docs/PERFORMANCE.md

# A short run of the benchmarks that fails when a figure, as a ratio to its
# same-run baseline, falls below its floor in docs/bench-floors.json.
BENCH_CHECK_FILTER := ^(single_client_tasks_sync|single_client_tasks_async|1_1_actor_calls_sync|1_1_actor_calls_async|single_client_put_calls|single_client_get_calls|placement_group_create/removal|cold_start_go_guest|cold_start_c_guest|matmul_256_go_guest|matmul_256_c_guest|actor_creation_go_guest|actor_creation_c_guest|parked_go_task_memory|baseline_api_p99|state_pages_p99_at_scale|state_list_p99_at_scale|baseline_http_echo_rps|serve_echo_rps|serve_c_echo_rps|baseline_http_p50_ms|serve_cold_start_go_ms|serve_cold_start_c_ms)$$
bench-check: build examples guests
	$(BIN) bench --trial 500ms --warmup 200ms --trials 2 --filter '$(BENCH_CHECK_FILTER)' --check docs/bench-floors.json

demo: $(BIN) bin/examples/quickstart.wasm
	$(BIN) run bin/examples/quickstart.wasm

cluster-demo: $(BIN) bin/examples/cluster.wasm
	bash examples/cluster/demo.sh $(BIN) bin/examples/cluster.wasm

# script (util-linux's bsdutils, essential in Debian) runs the CLI on a
# pty for the tests of what it draws on a terminal; Debian's chromium runs
# the dashboard's tests in a real, headless browser.
test-tools:
	@if ! command -v script >/dev/null || ! command -v chromium >/dev/null; then \
	  echo "installing bsdutils (script) and chromium for the tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bsdutils chromium >/dev/null; \
	fi

test: build examples guests bin/wat2wasm test-tools
	$(GO) test -race -timeout 15m ./...
	$(MAKE) --no-print-directory bench-check

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./cmd/fabric ./fabric
	GOOS=windows GOARCH=amd64 $(GO) vet ./cmd/fabric ./fabric
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/ ./examples/... ./internal/testguests/...
	GOBIN=$(CURDIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	bin/staticcheck ./...
	GOOS=wasip1 GOARCH=wasm bin/staticcheck ./sdk/ ./examples/... ./internal/testguests/...
	@cd sdk && $(GO) generate . && cd .. && if ! git diff --quiet -- sdk/arities.go; then echo "sdk/arities.go is not what sdk/internal/arities writes: run go generate ./sdk"; exit 1; fi
	@cp go.mod /tmp/fabric-go.mod.bak; cp go.sum /tmp/fabric-go.sum.bak; $(GO) mod tidy; \
	  if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changes go.mod/go.sum"; git diff -- go.mod go.sum; exit 1; fi

# Release binaries, static, with SHA-256 checksums: the agent and every
# command for Linux; the client commands (submit, job, upload, call,
# module, list, status, version) for macOS and Windows.
RELEASE_TARGETS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
# VERSION names the release (make release VERSION=v0.3.0); default: the
# checkout's tag, or its commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

release:
	@rm -rf bin/release && mkdir -p bin/release
	@for t in $(RELEASE_TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; ext=; if [ $$os = windows ]; then ext=.exe; fi; \
	  echo "building bin/release/fabric-$$os-$$arch$$ext"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=auto -ldflags "-s -w -X main.version=$(VERSION)" \
	    -o bin/release/fabric-$$os-$$arch$$ext ./cmd/fabric || exit 1; \
	done
	cd bin/release && sha256sum fabric-* > SHA256SUMS && cat SHA256SUMS

clean:
	rm -rf bin
