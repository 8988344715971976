module github.com/ebpfreceiver/otelcol-ebpf/bench

go 1.26.8

require (
	github.com/cilium/ebpf v0.22.0
	github.com/ebpfreceiver/otelcol-ebpf v0.0.0
)

require (
	golang.org/x/image v0.48.0
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/ebpfreceiver/otelcol-ebpf => ../
