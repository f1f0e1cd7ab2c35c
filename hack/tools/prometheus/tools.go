//go:build tools

// Package tools pins Prometheus so `go build` can produce prometheus and promtool from this
// module: promtool unit-tests the chart's alert rules, prometheus scrapes the manager in e2e.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
