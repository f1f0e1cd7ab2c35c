package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `{"stage":"ResponseComplete","verb":"create","userAgent":"m/1","user":{"username":"mgr"},"objectRef":{"resource":"manifestworks","namespace":"c1","name":"w"},"responseStatus":{"code":201}}
{"stage":"ResponseComplete","verb":"patch","userAgent":"m/1","user":{"username":"mgr"},"objectRef":{"resource":"managedclusteraddons","subresource":"status","namespace":"c1","name":"a"},"responseStatus":{"code":409}}
{"stage":"ResponseComplete","verb":"watch","userAgent":"m/1","user":{"username":"mgr"},"objectRef":{"resource":"manifestworks"},"responseStatus":{"code":200}}
{"stage":"Panic","verb":"get","userAgent":"o/1","user":{"username":"ocm"},"objectRef":{"resource":"secrets","namespace":"argocd","name":"ca"},"responseStatus":{"code":500}}
{"stage":"ResponseComplete","verb":"get","userAgent":"x","user":{"username":"other"},"responseStatus":{"code":200}}
`

func writeLog(t *testing.T, content string) Log {
	t.Helper()
	l := Log{Path: filepath.Join(t.TempDir(), "audit.log")}
	if err := os.WriteFile(l.Path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCount(t *testing.T) {
	l := writeLog(t, sample)
	events, err := l.Events(0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 4 {
		t.Fatalf("%d events, want 4 (the watch left out)", len(events))
	}
	counts := Count(events, func(e Event) string {
		if e.User.Username == "other" {
			return ""
		}
		return e.User.Username
	})
	if len(counts) != 2 {
		t.Fatalf("clients %v, want mgr and ocm", counts)
	}
	m := counts["mgr"]
	if m.Total != 2 || m.Writes != 2 || m.ConflictTotal() != 1 {
		t.Fatalf("mgr: %+v", m)
	}
	if got := m.Conflicts[Key{"patch", "managedclusteraddons/status"}]; got != 1 {
		t.Errorf("conflict not keyed by verb and subresource: %v", m.Conflicts)
	}
	if got := m.Verbs(2); got != "create 0.5 patch 0.5" {
		t.Errorf("Verbs = %q", got)
	}
	top := m.Top(1, 1)
	if len(top) != 1 || !strings.HasPrefix(top[0], "create manifestworks 1.00") {
		t.Errorf("Top = %v", top)
	}
	if o := counts["ocm"]; o.Writes != 0 || o.Total != 1 {
		t.Errorf("ocm: %+v", o)
	}
	if (*Counts)(nil).ConflictTotal() != 0 || (*Counts)(nil).Verbs(1) != "-" {
		t.Error("a client with no requests must count as none")
	}
}

func TestEventsBetweenOffsets(t *testing.T) {
	first := strings.SplitAfter(sample, "\n")[0]
	l := writeLog(t, sample)
	events, err := l.Events(int64(len(first)), -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[0].Verb != "patch" {
		t.Fatalf("from the second line: %+v", events)
	}
	if events, err = l.Events(0, int64(len(first))); err != nil || len(events) != 1 || events[0].Verb != "create" {
		t.Fatalf("up to the first line's end: %+v %v", events, err)
	}
	// A line still being written at the end is left for the next read, not an error.
	l = writeLog(t, sample+`{"stage":"ResponseComplete","verb":"cre`)
	if events, err = l.Events(0, -1); err != nil || len(events) != 4 {
		t.Fatalf("with a half-written last line: %d events, %v", len(events), err)
	}
	l = writeLog(t, sample+`{"stage":"ResponseComplete","verb":"cre`)
	if off, err := l.Offset(); err != nil || off != int64(len(sample)) {
		t.Fatalf("Offset = %d, %v; want the end of the last whole line, %d", off, err, len(sample))
	}
	// A corrupt line is an error, not a count short.
	l = writeLog(t, "not json\n"+sample)
	if _, err := l.Events(0, -1); err == nil {
		t.Fatal("a corrupt line inside the interval was accepted")
	}
	if off, err := l.Offset(); err != nil || off != int64(len("not json\n"+sample)) {
		t.Fatalf("Offset = %d, %v; want the end of the last whole line, %d", off, err, len(sample))
	}
	if off, err := (Log{Path: filepath.Join(t.TempDir(), "none")}).Offset(); err != nil || off != 0 {
		t.Fatalf("a log not yet written has offset 0: %d %v", off, err)
	}
}
