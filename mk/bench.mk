# make bench-system: the receiver's overhead, capture rate and latency on
# loopback HTTP workloads, against nothing attached and two floors of empty
# hooks (bench/, a Go module of its own; bpf/floor). Prints one table and
# writes out/bench/results.json and results.png, and CPU profiles of the
# full receiver under keepalive and rate5k with their top functions. See
# docs/performance.md.
# make bench-smoke: one short round of the same, failing unless every
# configuration ran and saw traffic.

BENCH_BIN := _build/bench

.PHONY: bench-bin bench-system bench-smoke

bench-bin:
	@mkdir -p _build
	cd bench && $(GO) build -o ../$(BENCH_BIN) .

## bench-system: 5 alternating rounds of every configuration (as root, ~10 min)
bench-system: build bench-bin
	$(require_root)
	./$(BENCH_BIN) run -rounds 5 -dur 3s -out out/bench
	for w in keepalive rate5k; do \
		$(GO) tool pprof -top -nodecount=30 $(DIST) out/bench/full-$$w.cpu.pprof > out/bench/full-$$w.top.txt || exit 1; \
	done
	@echo "wrote out/bench/full-{keepalive,rate5k}.top.txt (go tool pprof -top of the full receiver under each workload)"

## bench-smoke: one 1 s round of every configuration (as root, < 1 min)
bench-smoke: build bench-bin
	$(require_root)
	./$(BENCH_BIN) run -rounds 1 -dur 1s -idle 1000 -idle-cpu 3s -check -out out/bench-smoke
