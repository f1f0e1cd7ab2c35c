// Package metrictext reads samples of one metric from a Prometheus text exposition, as the
// tests scrape it from the principal, the agent and the API server.
package metrictext

import (
	"fmt"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one sample of a counter, gauge or untyped metric.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Samples returns the samples of metric name in body; an error if body does not parse or does
// not have that metric.
func Samples(body, name string) ([]Sample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	fam, ok := families[name]
	if !ok {
		return nil, fmt.Errorf("metric %s not exported", name)
	}
	var out []Sample
	for _, m := range fam.GetMetric() {
		s := Sample{Labels: map[string]string{}}
		for _, l := range m.GetLabel() {
			s.Labels[l.GetName()] = l.GetValue()
		}
		switch {
		case m.Counter != nil:
			s.Value = m.GetCounter().GetValue()
		case m.Gauge != nil:
			s.Value = m.GetGauge().GetValue()
		case m.Untyped != nil:
			s.Value = m.GetUntyped().GetValue()
		default:
			return nil, fmt.Errorf("metric %s is a %s, not a single value", name, fam.GetType())
		}
		out = append(out, s)
	}
	return out, nil
}

// Value is the value of the sample of metric name in body whose labels include labels; ok is
// false when no sample matches.
func Value(body, name string, labels map[string]string) (value float64, ok bool, err error) {
	samples, err := Samples(body, name)
	if err != nil {
		return 0, false, err
	}
next:
	for _, s := range samples {
		for k, v := range labels {
			if s.Labels[k] != v {
				continue next
			}
		}
		return s.Value, true, nil
	}
	return 0, false, nil
}
