package disksource

import (
	"testing"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

func TestValidate(t *testing.T) {
	sourcetest.CheckValidate(t, func() *Config { c := DefaultConfig(); return &c }, (*Config).Validate, []sourcetest.ConfigCase[Config]{
		{Name: "default", Modify: func(*Config) {}},
		{Name: "no disk series", Modify: func(c *Config) { c.MaxSeries = 0 }, Errs: []error{errMaxSeries}},
		{Name: "too many disk series", Modify: func(c *Config) { c.MaxSeries = maxLimit + 1 }, Errs: []error{errMaxSeries}},
		{Name: "no disk inflight", Modify: func(c *Config) { c.MaxInflight = 0 }, Errs: []error{errMaxInflight}},
		{Name: "too many disk inflight", Modify: func(c *Config) { c.MaxInflight = maxLimit + 1 }, Errs: []error{errMaxInflight}},
	})
}
