# mitostar — build, test, benchmark.
GO      ?= go
export PATH := /usr/local/go/bin:$(PATH)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/mitostar/mitostar/core.BuildVersion=$(VERSION)
export CGO_ENABLED := 0

.PHONY: build test cross bench bench-smoke fuzz soak dist vet fmt clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/mitostar ./cmd/mitostar

vet:
	$(GO) vet ./...

# make test: everything CI runs, the benchmark harness's smoke run included. Integration tests need root and the tools
# .ci/run installs; set MITOSTAR_REQUIRE_INTEGRATION=1 to turn a missing
# tool into a failure instead of a skip.
test:
	$(GO) vet ./...
	$(MAKE) cross
	CGO_ENABLED=1 $(GO) test -race -timeout 30m ./...
	$(MAKE) bench-smoke

# cross: the binary still builds for the other systems dist ships (the
# code under test only runs on Linux here); one target per system.
DIST_TARGETS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64
CROSS_TARGETS := linux/arm64 darwin/arm64 freebsd/amd64
cross:
	for t in $(CROSS_TARGETS); do \
		GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -trimpath -o /dev/null ./cmd/mitostar || exit 1; \
	done

bench:
	./bench/run.sh

bench-smoke:
	BENCH_SMOKE=1 ./bench/run.sh

# soak: the full soak of tests/soak (100,000 calls, 100,000 pipelined
# calls, 10,000 connects and shutdowns, 1,000 fs.put; the processes'
# descriptors, goroutines, threads and memory must not grow). make test
# runs a version ten times smaller, under the race detector.
soak:
	MITOSTAR_SOAK=full $(GO) test -count=1 -timeout 60m -run '^TestSoak$$' -v ./tests/soak

FUZZTIME ?= 10m
fuzz:
	$(GO) test ./core -run '^$$' -fuzz FuzzReadMessage -fuzztime $(FUZZTIME)

dist:
	@mkdir -p dist
	for t in $(DIST_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; \
		GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/mitostar-$$os-$$arch ./cmd/mitostar || exit 1; \
	done

fmt:
	gofmt -l -w .

clean:
	rm -rf bin dist
