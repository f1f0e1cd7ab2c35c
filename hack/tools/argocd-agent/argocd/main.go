// Command argocd runs the Argo CD components the test fleet needs, built from the argo-cd module
// argocd-agent v0.9.0 requires. Like upstream's single argocd binary it chooses the component by
// the name it is run as (or ARGOCD_BINARY_NAME); unlike it, it leaves out argocd-server, the CLI,
// dex and notifications, which the agent model does not run on a spoke.
//
// Archives are read as upstream builds them (GODEBUG tarinsecurepath=0,zipinsecurepath=0 in its
// Makefile): an entry naming a path outside its root is refused.
//
//go:debug tarinsecurepath=0
//go:debug zipinsecurepath=0
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	appset "github.com/argoproj/argo-cd/v3/cmd/argocd-applicationset-controller/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
)

func main() {
	name := filepath.Base(os.Args[0])
	if env := os.Getenv("ARGOCD_BINARY_NAME"); env != "" {
		name = env
	}
	var command *cobra.Command
	switch name {
	case "argocd-application-controller":
		command = appcontroller.NewCommand()
	case "argocd-repo-server":
		command = reposerver.NewCommand()
	case "argocd-applicationset-controller":
		command = appset.NewCommand()
	default:
		fmt.Fprintf(os.Stderr, "%s: run as argocd-application-controller, argocd-repo-server or argocd-applicationset-controller (by name or ARGOCD_BINARY_NAME)\n", name)
		os.Exit(2)
	}
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
