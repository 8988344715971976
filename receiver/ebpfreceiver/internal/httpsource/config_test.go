package httpsource

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

func TestValidate(t *testing.T) {
	sourcetest.CheckValidate(t, func() *Config { c := DefaultConfig(); return &c }, (*Config).Validate, []sourcetest.ConfigCase[Config]{
		{Name: "default", Modify: func(*Config) {}},
		{Name: "small capture", Modify: func(c *Config) { c.CaptureBytes = 63 }, Errs: []error{errCaptureBytes}},
		{Name: "large capture", Modify: func(c *Config) { c.CaptureBytes = 513 }, Errs: []error{errCaptureBytes}},
		{Name: "smallest capture", Modify: func(c *Config) { c.CaptureBytes = 64 }},
		{Name: "largest capture", Modify: func(c *Config) { c.CaptureBytes = 512 }},
		{Name: "no http connections", Modify: func(c *Config) { c.MaxConnections = 0 }, Errs: []error{errMaxConnections}},
		{Name: "too many http connections", Modify: func(c *Config) { c.MaxConnections = maxConnsLimit + 1 }, Errs: []error{errMaxConnections}},
		{Name: "most http connections", Modify: func(c *Config) { c.MaxConnections = maxConnsLimit }},
		{Name: "no routes", Modify: func(c *Config) { c.MaxRoutesPerResource = 0 }, Errs: []error{errMaxRoutes}},
		{Name: "negative link window", Modify: func(c *Config) { c.LinkWindow = -1 }, Errs: []error{errLinkWindow}},
		{Name: "long link window", Modify: func(c *Config) { c.LinkWindow = 2 * time.Minute }, Errs: []error{errLinkWindow}},
		{Name: "longest link window", Modify: func(c *Config) { c.LinkWindow = maxLinkWindow }},
		{Name: "no link window", Modify: func(c *Config) { c.LinkWindow = 0 }},
		{Name: "no pending spans", Modify: func(c *Config) { c.MaxPendingSpans = 0 }, Errs: []error{errMaxPendingSpans}},
		{Name: "too many pending spans", Modify: func(c *Config) { c.MaxPendingSpans = maxPendingLimit + 1 }, Errs: []error{errMaxPendingSpans}},
		{Name: "bad port", Modify: func(c *Config) { c.Ports.Exclude = []int{0} }, Errs: []error{errPort}},
		{Name: "port too high", Modify: func(c *Config) { c.Ports.Include = []int{65536} }, Errs: []error{errPort}},
		{Name: "edge ports", Modify: func(c *Config) { c.Ports.Include = []int{1, 65535} }},
		{Name: "keep no other spans", Modify: func(c *Config) { c.Spans.KeepPercent = 0 }},
		{Name: "keep a share", Modify: func(c *Config) { c.Spans.KeepPercent = 0.5 }},
		{Name: "keep a negative share", Modify: func(c *Config) { c.Spans.KeepPercent = -1 }, Errs: []error{errKeepPercent}},
		{Name: "keep over 100%", Modify: func(c *Config) { c.Spans.KeepPercent = 100.1 }, Errs: []error{errKeepPercent}},
		{Name: "keep NaN", Modify: func(c *Config) { c.Spans.KeepPercent = math.NaN() }, Errs: []error{errKeepPercent}},
		{Name: "no slow spans", Modify: func(c *Config) { c.Spans.SlowThreshold = 0 }},
		{Name: "negative slow threshold", Modify: func(c *Config) { c.Spans.SlowThreshold = -time.Second }, Errs: []error{errSlowThreshold}},
		{Name: "bad cgroup prefix", Modify: func(c *Config) { c.Cgroups.Include = []string{"kubepods"} }, Errs: []error{errCgroupPrefix}},
	})
}

func TestFilters(t *testing.T) {
	ports := PortFilter{Include: []int{80, 8080}, Exclude: []int{8080}}
	assert.True(t, ports.allows(80))
	assert.False(t, ports.allows(8080), "exclude wins")
	assert.False(t, ports.allows(443))
	assert.True(t, PortFilter{}.allows(443))

	cg := CgroupFilter{Include: []string{"/kubepods.slice"}, Exclude: []string{"/kubepods.slice/kubepods-besteffort.slice"}}
	assert.True(t, cg.allows("/kubepods.slice/kubepods-burstable.slice/x", true))
	assert.False(t, cg.allows("/kubepods.slice/kubepods-besteffort.slice/x", true))
	assert.False(t, cg.allows("/system.slice/nginx.service", true))
	assert.False(t, cg.allows("", false), "unknown paths only when nothing is included")
	assert.True(t, CgroupFilter{Exclude: []string{"/system.slice"}}.allows("", false))
}
