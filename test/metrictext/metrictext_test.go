package metrictext

import "testing"

func TestSamples(t *testing.T) {
	body := `# HELP agent_connected_with_principal The total number of agents connected with principal
# TYPE agent_connected_with_principal gauge
agent_connected_with_principal 2
# TYPE agent_connected_with_principal_total counter
agent_connected_with_principal_total{x="y"} 7
# TYPE principal_event_processing_time histogram
principal_event_processing_time_bucket{agent_name="a",le="0.1"} 3
principal_event_processing_time_bucket{agent_name="a",le="+Inf"} 3
principal_event_processing_time_sum{agent_name="a"} 0.2
principal_event_processing_time_count{agent_name="a"} 3
`
	s, err := Samples(body, "agent_connected_with_principal")
	if err != nil || len(s) != 1 || s[0].Value != 2 || len(s[0].Labels) != 0 {
		t.Fatalf("got %+v, %v", s, err)
	}
	if s, err = Samples(body, "agent_connected_with_principal_total"); err != nil || len(s) != 1 || s[0].Value != 7 || s[0].Labels["x"] != "y" {
		t.Fatalf("counter: got %+v, %v", s, err)
	}
	// Untyped, with an escaped quote in a label value.
	s, err = Samples(`agent_connected_with_principal{agent="c1"} 1`+"\n"+`agent_connected_with_principal{agent="c\"2"} 0`+"\n", "agent_connected_with_principal")
	if err != nil || len(s) != 2 || s[0].Labels["agent"] != "c1" || s[1].Labels["agent"] != `c"2` || s[1].Value != 0 {
		t.Fatalf("got %+v, %v", s, err)
	}
	if _, err := Samples("other 1\n", "agent_connected_with_principal"); err == nil {
		t.Fatal("want an error for a missing metric")
	}
	if _, err := Samples(body, "principal_event_processing_time"); err == nil {
		t.Fatal("want an error for a histogram")
	}
	if _, err := Samples("agent_connected_with_principal{ 1\n", "agent_connected_with_principal"); err == nil {
		t.Fatal("want an error for malformed text")
	}
}

func TestValue(t *testing.T) {
	body := `# TYPE argocd_agent_addon_csr_denied_total counter
argocd_agent_addon_csr_denied_total{reason="WrongRequester"} 5
argocd_agent_addon_csr_denied_total{reason="SubjectMismatch"} 7
`
	if v, ok, err := Value(body, "argocd_agent_addon_csr_denied_total", map[string]string{"reason": "SubjectMismatch"}); err != nil || !ok || v != 7 {
		t.Fatalf("got %v %v %v", v, ok, err)
	}
	if _, ok, err := Value(body, "argocd_agent_addon_csr_denied_total", map[string]string{"reason": "Revoked"}); err != nil || ok {
		t.Fatalf("a sample matched labels it does not have (%v)", err)
	}
	if v, ok, _ := Value(body, "argocd_agent_addon_csr_denied_total", nil); !ok || v != 5 {
		t.Fatalf("no labels should match the first sample, got %v %v", v, ok)
	}
}
