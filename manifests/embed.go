// Package manifests embeds the templates of the objects the add-on delivers to every managed
// cluster. They are rendered by addon-framework's template engine (Go text/template without
// sprig), one object per file.
//
// Every value the templates use, except the framework's built-ins, is produced by
// pkg/agentconfig already encoded as JSON, which is valid YAML. Templates insert values as they
// are and never quote them, so no user-supplied string can change the document's structure.
package manifests

import "embed"

// AgentDir is the directory of AgentFS that holds the agent templates.
const AgentDir = "agent"

// AgentFS holds the agent templates.
//
//go:embed agent
var AgentFS embed.FS
