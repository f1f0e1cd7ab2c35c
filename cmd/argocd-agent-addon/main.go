// Command argocd-agent-addon is the hub manager of the Argo CD agent OCM add-on.
package main

import (
	"os"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd"
)

func main() {
	if err := cmd.NewRootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
