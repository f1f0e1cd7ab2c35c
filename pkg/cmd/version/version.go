// Package version is the `argocd-agent-addon version` command.
package version

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/argocd-agent-addon/argocd-agent-addon/pkg/version"
)

// NewCommand returns the version command.
func NewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String())
			return err
		},
	}
}
