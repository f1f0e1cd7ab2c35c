// Package audit reads a kube-apiserver audit log (JSON lines, as testenv.Options.AuditLog
// writes it) to tell which client made which requests: benchmarks count a manager's requests by
// verb and resource, and its conflicts, apart from everything else on the same API server.
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Event is the part of an audit event the counts use.
type Event struct {
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	Stage     string `json:"stage"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// Resource is resource[/subresource], or the request's kind of non-resource URL ("-").
func (e Event) Resource() string {
	if e.ObjectRef == nil {
		return "-"
	}
	if e.ObjectRef.Subresource != "" {
		return e.ObjectRef.Resource + "/" + e.ObjectRef.Subresource
	}
	return e.ObjectRef.Resource
}

// Code is the response's HTTP status code, 0 if the event has none.
func (e Event) Code() int {
	if e.ResponseStatus == nil {
		return 0
	}
	return e.ResponseStatus.Code
}

// Write says whether the request asked to change something.
func (e Event) Write() bool {
	switch e.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// Log is an audit log file that grows while it is read.
type Log struct{ Path string }

// Offset is the end of the log's last complete line now: the start of what later requests
// write. A line being written as it is called belongs to the later requests.
func (l Log) Offset() (int64, error) {
	f, err := os.Open(l.Path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	// Audit events are far smaller than this window; a log with no newline in it is all one
	// line in progress.
	end := st.Size()
	start := max(0, end-1<<20)
	buf := make([]byte, end-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return 0, err
	}
	i := bytes.LastIndexByte(buf, '\n')
	if i < 0 {
		return start, nil
	}
	return start + int64(i) + 1, nil
}

// Events are the completed requests logged from offset from to offset to (-1: the end); both
// offsets are ones Offset returned. A watch is logged when it ends, so watches are left out:
// they say nothing of one interval.
func (l Log) Events(from, to int64) ([]Event, error) {
	f, err := os.Open(l.Path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, err
	}
	var r io.Reader = f
	if to >= 0 {
		r = io.LimitReader(f, to-from)
	}
	var out []Event
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			// A last line without its newline is still being written: it belongs to the next read.
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("audit log %s: %w", l.Path, err)
		}
		if e.Stage != "ResponseComplete" && e.Stage != "Panic" || e.Verb == "watch" {
			continue
		}
		out = append(out, e)
	}
}

// Key is one kind of request a client makes.
type Key struct{ Verb, Resource string }

// Counts are one client's requests.
type Counts struct {
	ByKey     map[Key]int
	Conflicts map[Key]int
	Total     int
	Writes    int
}

// Count groups events by client, as component names each event (empty: not counted).
func Count(events []Event, component func(Event) string) map[string]*Counts {
	out := map[string]*Counts{}
	for _, e := range events {
		c := component(e)
		if c == "" {
			continue
		}
		n := out[c]
		if n == nil {
			n = &Counts{ByKey: map[Key]int{}, Conflicts: map[Key]int{}}
			out[c] = n
		}
		k := Key{e.Verb, e.Resource()}
		n.ByKey[k]++
		n.Total++
		if e.Write() {
			n.Writes++
		}
		if e.Code() == 409 {
			n.Conflicts[k]++
		}
	}
	return out
}

// ConflictTotal is the number of requests answered 409 Conflict.
func (c *Counts) ConflictTotal() int {
	if c == nil {
		return 0
	}
	n := 0
	for _, v := range c.Conflicts {
		n += v
	}
	return n
}

// Verbs sums the counts by verb, as "get 3.0 list 0.1 ..." per unit (per cluster, say).
func (c *Counts) Verbs(per float64) string {
	if c == nil {
		return "-"
	}
	by := map[string]int{}
	for k, v := range c.ByKey {
		by[k.Verb] += v
	}
	return perUnit(by, per)
}

// Top lists the n most frequent kinds of request, per unit, with their conflicts.
func (c *Counts) Top(n int, per float64) []string {
	if c == nil {
		return nil
	}
	keys := make([]Key, 0, len(c.ByKey))
	for k := range c.ByKey {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c.ByKey[keys[i]] != c.ByKey[keys[j]] {
			return c.ByKey[keys[i]] > c.ByKey[keys[j]]
		}
		return keys[i].Verb+keys[i].Resource < keys[j].Verb+keys[j].Resource
	})
	var out []string
	for i, k := range keys {
		if i == n {
			break
		}
		s := fmt.Sprintf("%s %s %.2f", k.Verb, k.Resource, float64(c.ByKey[k])/per)
		if x := c.Conflicts[k]; x > 0 {
			s += fmt.Sprintf(" (409: %.2f)", float64(x)/per)
		}
		out = append(out, s)
	}
	return out
}

func perUnit(by map[string]int, per float64) string {
	names := make([]string, 0, len(by))
	for k := range by {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(by[k])/per))
	}
	return strings.Join(parts, " ")
}
