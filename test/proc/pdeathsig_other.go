//go:build !linux

package proc

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
