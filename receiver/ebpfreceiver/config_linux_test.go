package ebpfreceiver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebpfreceiver/otelcol-ebpf/receiver/ebpfreceiver/internal/cgroup"
)

// cgroup_root, when set, must be a cgroup v2 mount on this machine; the
// error says where one is.
func TestValidateCgroupRoot(t *testing.T) {
	mount, err := cgroup.FindMount()
	require.NoError(t, err, "this machine has cgroup v2 mounted")
	tests := []struct {
		root string
		ok   bool
	}{
		{mount, true},
		{"/nonexistent", false},
		{"/proc", false},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			cfg := createDefaultConfig()
			cfg.CgroupRoot = tt.root
			err := cfg.Validate()
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "cgroup_root")
			assert.Contains(t, err.Error(), "cgroup2 is mounted at "+mount)
		})
	}
}
