package forge_test

import (
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
)

// TestMain stops the shared Gitea the tests start.
func TestMain(m *testing.M) { testenv.Main(m) }
