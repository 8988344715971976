package sourcetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ConfigCase is one change to a default config and the errors its
// validation must wrap; none means the change is valid.
type ConfigCase[C any] struct {
	Name   string
	Modify func(*C)
	Errs   []error
}

// CheckValidate runs validate on the default config changed by each case.
func CheckValidate[C any](t *testing.T, defaults func() *C, validate func(*C) error, cases []ConfigCase[C]) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			cfg := defaults()
			tt.Modify(cfg)
			err := validate(cfg)
			if len(tt.Errs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.Errs {
				assert.ErrorIs(t, err, want)
			}
		})
	}
}
