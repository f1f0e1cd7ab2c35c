// Package manifests embeds the templates of the objects the add-on delivers to every managed
// cluster, one object per file, and renders them (Go text/template, no functions).
//
// Every value the templates use is produced by pkg/plan already encoded as JSON, which is valid
// YAML. Templates insert values as they are and never quote them, so no user-supplied string can
// change the document's structure.
package manifests

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sync"
	"text/template"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// AgentDir is the directory of AgentFS that holds the agent templates.
const AgentDir = "agent"

// AgentFS holds the agent templates.
//
//go:embed agent
var AgentFS embed.FS

// agentTemplates are the agent templates, parsed once, in file name order.
var agentTemplates = sync.OnceValues(func() ([]*template.Template, error) {
	entries, err := fs.ReadDir(AgentFS, AgentDir)
	if err != nil {
		return nil, err
	}
	var out []*template.Template
	for _, e := range entries {
		data, err := AgentFS.ReadFile(path.Join(AgentDir, e.Name()))
		if err != nil {
			return nil, err
		}
		// A value the templates do not get is an error, not "<no value>" in a manifest.
		t, err := template.New(e.Name()).Option("missingkey=error").Parse(string(data))
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
})

// RenderAgent renders the agent templates with values and decodes each into its API object, in
// file name order. A template that renders no object (the CA Secret without a bundle) is left
// out.
func RenderAgent(values map[string]any) ([]runtime.Object, error) {
	templates, err := agentTemplates()
	if err != nil {
		return nil, fmt.Errorf("parsing the agent templates: %w", err)
	}
	decoder := clientgoscheme.Codecs.UniversalDeserializer()
	var objects []runtime.Object
	for _, t := range templates {
		var buf bytes.Buffer
		if err := t.Execute(&buf, values); err != nil {
			return nil, err
		}
		obj, _, err := decoder.Decode(buf.Bytes(), nil, nil)
		if runtime.IsMissingKind(err) {
			continue // comments and whitespace only: nothing to deliver
		}
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", t.Name(), err)
		}
		objects = append(objects, obj)
	}
	return objects, nil
}
