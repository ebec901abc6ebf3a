# Fabric's build. `make demo` runs the quickstart on an embedded node;
# `make test` builds everything the tests need and runs them under -race.
GO        ?= go
BIN       := bin/fabric
EXAMPLES  := quickstart batches counter shared wait resources
GUESTS    := $(notdir $(patsubst %/,%,$(dir $(wildcard internal/testguests/*/main.go))))
STATICCHECK_VERSION := v0.8.2

GO_SOURCES := $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum

.PHONY: all build examples guests demo test check bench clean

all: build examples

build: $(BIN)

$(BIN): $(GO_SOURCES)
	$(GO) build -o $@ ./cmd/fabric

bin/examples/%.wasm: $(BIN) $(GO_SOURCES)
	@mkdir -p bin/examples
	$(BIN) build ./examples/$* -o $@

bin/testguests/%.wasm: $(BIN) $(GO_SOURCES)
	@mkdir -p bin/testguests
	$(BIN) build ./internal/testguests/$* -o $@

examples: $(addprefix bin/examples/,$(addsuffix .wasm,$(EXAMPLES)))

guests: $(addprefix bin/testguests/,$(addsuffix .wasm,$(GUESTS)))

demo: $(BIN) bin/examples/quickstart.wasm
	$(BIN) run bin/examples/quickstart.wasm

test: build examples guests
	$(GO) test -race -timeout 15m ./...

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/ ./examples/... ./internal/testguests/...
	GOBIN=$(CURDIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	bin/staticcheck ./...
	GOOS=wasip1 GOARCH=wasm bin/staticcheck ./sdk/ ./examples/... ./internal/testguests/...
	@cp go.mod /tmp/fabric-go.mod.bak; cp go.sum /tmp/fabric-go.sum.bak; $(GO) mod tidy; \
	  if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changes go.mod/go.sum"; git diff -- go.mod go.sum; exit 1; fi

clean:
	rm -rf bin
