package proc

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal kills the child when the test process dies without cleaning up (e.g. on a
// `go test -timeout` panic), so no principal, agent or redis-server is left running.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
