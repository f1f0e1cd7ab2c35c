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
	// As kubectl does, help lists -v only: the other klog flags are rarely wanted, and listed
	// first they bury the command's own. They still work.
	klogFlags.VisitAll(func(f *flag.Flag) {
		if f.Name != "v" {
			_ = root.PersistentFlags().MarkHidden(f.Name)
		}
	})
	root.PersistentFlags().Lookup("v").Usage = "Log verbosity: 0 is quiet, 2 shows controller activity, 4 and up is for debugging. klog's other flags (vmodule, logtostderr, ...) work too but are not listed."

	root.AddCommand(manager.NewCommand(), render.NewCommand(), status.NewCommand(), version.NewCommand())
	root.AddCommand(revoke.NewCommands()...)
	return root
}
