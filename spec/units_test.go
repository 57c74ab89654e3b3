package spec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]Bytes{
		"0": 0, "900": 900, "900B": 900, "512Ki": 512 << 10, "128Mi": 128 << 20, "1Gi": 1 << 30,
		"1.5Gi": 3 << 29, "64M": 64e6, "1G": 1e9, "2k": 2000, "1T": 1e12, "1Ei": 1 << 60,
		"0.5": 1, "0.1Ki": 103, ".5Ki": 512, "7Ei": 7 << 60, "9223372036854775807": 1<<63 - 1,
	} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"": "not a size", "Mi": "not a size", "1.2.3Mi": "not a size", "-1Mi": "negative", "1Q": `unknown unit "Q"`,
		"1mi": "unknown unit", "1KiB": "unknown unit", "8Ei": "too large", "9223372036854775808": "too large",
		"1e3": "unknown unit", "0x10": "unknown unit", " 1": "not a size",
	} {
		if _, err := ParseBytes(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBytes(%q) error = %v; want %q", in, err, want)
		}
	}
}

func TestBytesForms(t *testing.T) {
	tests := []struct {
		b         Bytes
		str, yaml string
		json      string
	}{
		{0, "0B", "0", "0"},
		{900, "900B", "900", "900"},
		{1024, "1Ki", "1Ki", `"1Ki"`},
		{1000, "1000B", "1000", "1000"},
		{1536, "1.5Ki", "1536", "1536"},
		{5 << 39, "2.5Ti", "2.5Ti", `"2.5Ti"`},
		{128 << 20, "128Mi", "128Mi", `"128Mi"`},
		{3 << 29, "1.5Gi", "1.5Gi", `"1.5Gi"`},
		{64e6, "61Mi", "62500Ki", `"62500Ki"`},
		{1025, "1Ki", "1025", "1025"},
		{1<<63 - 1, "8Ei", "9223372036854775807", "9223372036854775807"},
	}
	for _, tt := range tests {
		if got := tt.b.String(); got != tt.str {
			t.Errorf("Bytes(%d).String() = %q, want %q", tt.b, got, tt.str)
		}
		y, _ := yaml.Marshal(tt.b)
		if got := strings.TrimSpace(string(y)); got != tt.yaml {
			t.Errorf("yaml.Marshal(%d) = %q, want %q", tt.b, got, tt.yaml)
		}
		j, _ := json.Marshal(tt.b)
		if string(j) != tt.json {
			t.Errorf("json.Marshal(%d) = %s, want %s", tt.b, j, tt.json)
		}
		var by, bj Bytes
		if err := yaml.Unmarshal(y, &by); err != nil || by != tt.b {
			t.Errorf("yaml round trip of %d: %d, %v", tt.b, by, err)
		}
		if err := json.Unmarshal(j, &bj); err != nil || bj != tt.b {
			t.Errorf("json round trip of %d: %d, %v", tt.b, bj, err)
		}
	}
	var b Bytes
	for _, bad := range []string{`-1`, `"x"`, `{}`, `true`} {
		if err := json.Unmarshal([]byte(bad), &b); err == nil {
			t.Errorf("json.Unmarshal(%s) into Bytes: no error", bad)
		}
	}
}

func TestDurationForms(t *testing.T) {
	d := Duration(90 * time.Second)
	if d.Std() != 90*time.Second || d.String() != "1m30s" {
		t.Errorf("Std, String: %v %v", d.Std(), d)
	}
	y, _ := yaml.Marshal(d)
	j, _ := json.Marshal(d)
	if string(y) != "1m30s\n" || string(j) != `"1m30s"` {
		t.Errorf("marshal: %q %s", y, j)
	}
	var dy, dj Duration
	if yaml.Unmarshal([]byte("1m30s"), &dy) != nil || json.Unmarshal(j, &dj) != nil || dy != d || dj != d {
		t.Errorf("unmarshal: %v %v", dy, dj)
	}
	for _, bad := range []string{`30`, `"30"`, `"soon"`, `[]`} {
		if err := json.Unmarshal([]byte(bad), &dj); err == nil {
			t.Errorf("json.Unmarshal(%s) into Duration: no error", bad)
		}
	}
}
