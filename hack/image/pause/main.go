// Command pause is the sandbox ("pause") image of the test nodes: it holds a pod's namespaces
// and exits on SIGTERM or SIGINT. The nodes never pull, so it is built here like every image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
