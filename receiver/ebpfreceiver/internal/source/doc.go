// Package source is what every capability of the receiver shares: the
// Source interface that the receiver's registry loads, the metrics part
// that each collection records, the Resources that data is grouped by, and
// the helpers for histograms, map fill and removed cgroups.
//
// A capability lives in its own package next to this one (tcpsource,
// httpsource, …) with its config block, its loader and its golden files.
package source
