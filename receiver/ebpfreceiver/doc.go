//go:generate go tool -modfile=../../internal/tools/go.mod mdatagen metadata.yaml

// Package ebpfreceiver implements a receiver that turns what eBPF programs
// see in the kernel into OTLP metrics, spans (HTTP) and logs (deaths by
// signal, OOM kills), attributed to containers.
package ebpfreceiver
