// Package cmd assembles the argocd-agent-addon command line.
package cmd

import (
	"flag"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/manager"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/render"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/revoke"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/status"
	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/cmd/version"
)

// NewRootCommand returns the argocd-agent-addon command with its subcommands.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "argocd-agent-addon",
		Short: "Open Cluster Management add-on that runs the Argo CD agent on every managed cluster",
		Long: `argocd-agent-addon installs the Argo CD agent (argoproj-labs/argocd-agent) on the managed
clusters an OCM Placement selects, and signs each agent's mTLS client certificate with the CA
the Argo CD agent principal trusts.`,
		SilenceUsage: true,
	}
	// klog's flags (-v, --vmodule, ...) on a private flag set: no package global is touched.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	root.PersistentFlags().AddGoFlagSet(klogFlags)

	root.AddCommand(manager.NewCommand(), render.NewCommand(), status.NewCommand(), version.NewCommand())
	root.AddCommand(revoke.NewCommands()...)
	return root
}
