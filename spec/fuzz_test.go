package spec

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, and that a spec it accepts is
// valid and survives a YAML and a JSON round trip unchanged.
func FuzzParse(f *testing.F) {
	echo, err := os.ReadFile("testdata/echo.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(echo)
	f.Add([]byte("name: a\nrun: {command: app, args: [x, '']}\nenv: {A: '1', b_2: ''}\n"))
	f.Add([]byte("name: a\nrun: &r {command: app}\nscale: {<<: {min: 1}, target: 0.5, panicWindow: 1ns}\n"))
	f.Add([]byte("name: a\nrun: {go: ./x}\nmemory: 1.5Gi\ntimeout: 1h\nconcurrency: 10000\n"))
	f.Add([]byte("name: a\nconcurency: 1\nrun: {go: x, command: y}\nmemory: 12Q\n"))
	f.Add([]byte("name: a\n---\nname: b\n"))
	f.Add([]byte("name: a\nrun: {command: \"a b\", args: [\" x\\n\", \"#\", \"- y\", \"k: v\", \"\\u0085\\t\", null, ~]}\nenv: {A: \"\\n \", B: 'yes', C: 0x10}\n"))
	f.Add([]byte("name: a\nrun: {command: app}\nstore:\n  read: [corpus, shared-*, '*']\n  readWrite: [results, scratch-*]\n"))
	f.Add([]byte("name: a\nrun: {command: app}\nstore: {read: [], readWrite: [a.b-c, 'x*y*', '', corpus]}\n"))
	f.Add([]byte("name: a\nrun: {command: app}\nstore: {read: [abc, abc], readWrite: [abc], write: [z]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fn, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := fn.Validate(); err != nil {
			t.Fatalf("parsed spec is invalid: %v", err)
		}
		y, err := yaml.Marshal(fn)
		if err != nil {
			t.Fatalf("yaml.Marshal: %v", err)
		}
		again, err := Parse(y)
		if err != nil {
			t.Fatalf("re-parse of\n%s: %v", y, err)
		}
		if !reflect.DeepEqual(fn, again) {
			t.Fatalf("YAML round trip changed the spec:\n%#v\n%#v\n%s", fn, again, y)
		}
		j, err := json.Marshal(fn)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		var fromJSON Function
		if err := json.Unmarshal(j, &fromJSON); err != nil || !reflect.DeepEqual(fn, fromJSON) {
			t.Fatalf("JSON round trip changed the spec (%v):\n%#v\n%#v", err, fn, fromJSON)
		}
	})
}
