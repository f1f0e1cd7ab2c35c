//go:build !linux

package proc

import (
	"errors"
	"os/exec"
)

func setParentDeathSignal(*exec.Cmd) {}

// PeakRSS is not measured on this platform.
func (p *Process) PeakRSS() (int64, error) { return 0, errors.New("peak RSS is only read on Linux") }
