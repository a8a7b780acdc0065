package testenv_test

import (
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
