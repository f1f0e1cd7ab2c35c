package cmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Help lists -v and the command's own flags, not klog's dozen others, which still parse.
func TestHelpListsVerbosityOnly(t *testing.T) {
	root := NewRootCommand()
	out := &bytes.Buffer{}
	root.SetOut(out)
	root.SetArgs([]string{"manager", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, want := range []string{"-v, --v", "--kubeconfig", "--ca-secret"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %s:\n%s", want, help)
		}
	}
	for _, hidden := range []string{"--vmodule", "--logtostderr", "--log_file"} {
		if strings.Contains(help, hidden) {
			t.Errorf("help lists %s:\n%s", hidden, help)
		}
	}
	if err := root.PersistentFlags().Parse([]string{"--vmodule=manager=4", "--logtostderr=true", "-v=3"}); err != nil {
		t.Fatalf("hidden klog flags no longer parse: %v", err)
	}
}

// pflag takes a word in backquotes in a flag's usage as the name of its value: `revoke` in
// the usage of --namespace made help print "--namespace revoke".
func TestFlagUsagesHaveNoBackquotes(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage has a backquote: %s", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRootCommand())
}
