// Package must stops a test at a step that has to work: must.Succeed(t, err) is the
// `if err != nil { t.Fatal(err) }` the tests of test/ would otherwise each write for themselves.
package must

import "testing"

// Succeed fails t at once with err, if err is not nil; the failure is reported at the caller's
// line.
func Succeed(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
