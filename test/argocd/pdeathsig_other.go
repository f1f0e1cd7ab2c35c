//go:build !linux

package argocd

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
