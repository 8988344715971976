package processsource

import (
	"testing"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

func TestValidate(t *testing.T) {
	sourcetest.CheckValidate(t, func() *Config { c := DefaultConfig(); return &c }, (*Config).Validate, []sourcetest.ConfigCase[Config]{
		{Name: "default", Modify: func(*Config) {}},
		{Name: "no process series", Modify: func(c *Config) { c.MaxSeries = 0 }, Errs: []error{errMaxSeries}},
		{Name: "too many process series", Modify: func(c *Config) { c.MaxSeries = maxSeriesLimit + 1 }, Errs: []error{errMaxSeries}},
		{Name: "no logs", Modify: func(c *Config) { c.LogsPerSecond = 0 }, Errs: []error{errLogsPerSecond}},
		{Name: "too many logs", Modify: func(c *Config) { c.LogsPerSecond = maxLogsPerSecond + 1 }, Errs: []error{errLogsPerSecond}},
		{Name: "most logs", Modify: func(c *Config) { c.LogsPerSecond = maxLogsPerSecond }},
	})
}
