package spec

import (
	"reflect"
	"strings"
	"testing"
)

func TestStoreGrants(t *testing.T) {
	f, err := Parse([]byte("name: a\nrun: {command: app}\nstore:\n  read: [corpus, shared-*]\n  readWrite: [results, scratch-*]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Store{Read: []string{"corpus", "shared-*"}, ReadWrite: []string{"results", "scratch-*"}}
	if !reflect.DeepEqual(f.Store, want) {
		t.Fatalf("store = %+v; want %+v", f.Store, want)
	}
	for _, c := range []struct {
		bucket      string
		read, write bool
	}{
		{"corpus", true, false},
		{"corpus2", false, false},
		{"shared-x", true, false},
		{"shared", false, false},
		{"results", true, true},
		{"scratch-1", true, true},
		{"scratch-", true, true},
		{"other", false, false},
	} {
		if r, w := f.Store.Allows(c.bucket, false), f.Store.Allows(c.bucket, true); r != c.read || w != c.write {
			t.Errorf("%s: read %v write %v; want %v %v", c.bucket, r, w, c.read, c.write)
		}
	}
	all := Store{Read: []string{"*"}}
	if !all.Allows("anything", false) || all.Allows("anything", true) {
		t.Errorf("read * should read every bucket and write none")
	}
	if (Store{}).Allows("corpus", false) {
		t.Errorf("no store section grants a bucket")
	}
	// Empty lists are no grant, and leave the section out on the way back.
	f, err = Parse([]byte("name: a\nrun: {command: app}\nstore: {read: [], readWrite: []}\n"))
	if err != nil || !f.Store.IsZero() || f.Store.Read != nil || f.Store.ReadWrite != nil {
		t.Fatalf("empty store: %+v, %v", f.Store, err)
	}
}

func TestStoreGrantErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"store: {read: [AB]}", `store.read[0]: bucket "AB" must be 3 to 63 characters long; name a bucket`},
		{"store: {read: [Upper]}", `bucket "Upper" may hold only lowercase letters`},
		{"store: {readWrite: ['a*b*']}", `store.readWrite[0]: "a*b*" has a '*' before its end`},
		{"store: {read: ['-x*']}", `"-x*" can match no bucket`},
		{"store: {read: ['']}", `store.read[0]: empty; name a bucket`},
		{"store: {read: [corpus, corpus]}", `store.read[1]: "corpus" is listed twice`},
		{"store: {read: [corpus], readWrite: [corpus]}", `store.read[0]: "corpus" is also in store.readWrite`},
		{"store: {write: [corpus]}", `unknown field "write"`},
		{"store: [corpus]", `store`},
		{"store: {read: [" + strings.Repeat("b-0,", 33) + "]}", "store: 33 buckets granted; grant at most 32"},
	} {
		_, err := Parse([]byte("name: a\nrun: {command: app}\n" + c.in + "\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error with %q", c.in, err, c.want)
		}
	}
}
