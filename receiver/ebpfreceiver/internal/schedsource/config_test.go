package schedsource

import (
	"testing"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

func TestValidate(t *testing.T) {
	sourcetest.CheckValidate(t, func() *Config { c := DefaultConfig(); return &c }, (*Config).Validate, []sourcetest.ConfigCase[Config]{
		{Name: "default", Modify: func(*Config) {}},
		{Name: "no sched cgroups", Modify: func(c *Config) { c.MaxCgroups = 0 }, Errs: []error{errMaxCgroups}},
		{Name: "too many sched cgroups", Modify: func(c *Config) { c.MaxCgroups = maxCgroupsLimit + 1 }, Errs: []error{errMaxCgroups}},
		{Name: "most sched cgroups", Modify: func(c *Config) { c.MaxCgroups = maxCgroupsLimit }},
	})
}
