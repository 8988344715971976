package tcpsource

import (
	"testing"
	"time"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/sourcetest"
)

func TestValidate(t *testing.T) {
	sourcetest.CheckValidate(t, func() *Config { c := DefaultConfig(); return &c }, (*Config).Validate, []sourcetest.ConfigCase[Config]{
		{Name: "default", Modify: func(*Config) {}},
		{Name: "no connections", Modify: func(c *Config) { c.MaxConnections = 0 }, Errs: []error{errMaxConnections}},
		{Name: "too many connections", Modify: func(c *Config) { c.MaxConnections = maxConnectionsLimit + 1 }, Errs: []error{errMaxConnections}},
		{Name: "most connections", Modify: func(c *Config) { c.MaxConnections = maxConnectionsLimit }},
		{Name: "no flows", Modify: func(c *Config) { c.MaxFlows = 0 }, Errs: []error{errMaxFlows}},
		{Name: "too many flows", Modify: func(c *Config) { c.MaxFlows = maxFlowsLimit + 1 }, Errs: []error{errMaxFlows}},
		{Name: "most flows", Modify: func(c *Config) { c.MaxFlows = maxFlowsLimit }},
		{Name: "one peer", Modify: func(c *Config) { c.MaxPeersPerResource = 1 }},
		{Name: "no peers", Modify: func(c *Config) { c.MaxPeersPerResource = 0 }, Errs: []error{errMaxPeers}},
		{Name: "negative rtt interval", Modify: func(c *Config) { c.RTTSampleInterval = -time.Second }, Errs: []error{errRTTSampleInterval}},
		{Name: "zero rtt interval", Modify: func(c *Config) { c.RTTSampleInterval = 0 }},
		{
			Name:   "every error at once",
			Modify: func(c *Config) { *c = Config{RTTSampleInterval: -1} },
			Errs:   []error{errMaxConnections, errMaxFlows, errMaxPeers, errRTTSampleInterval},
		},
	})
}
