package realserver

import (
	"testing"

	"github.com/havip/havip/test/lab"
)

// inNewNetns runs the rest of the test in a fresh network namespace.
func inNewNetns(t *testing.T) { lab.EnterNewNetns(t) }
