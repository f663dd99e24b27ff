//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

func TestJSONMTU(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{`{"type":"NEWLINK","link":{"index":3,"name":"lat0","mtu":1442,"state":"down"}}`, 1442},
		{`{"link":{"mtu":0}}`, 0},
		{`{"link":{"name":"lat0"}}`, 0},
		{`{"link":{"mtu":65535}}`, 65535},
		{`"mtu":`, 0},
	}
	for _, tt := range tests {
		if got := jsonMTU([]byte(tt.in)); got != tt.want {
			t.Errorf("jsonMTU(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestMedianRounds(t *testing.T) {
	tests := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5}, 5},
		{[]time.Duration{9, 1}, 5},
		{[]time.Duration{9, 1, 4}, 4},
		{[]time.Duration{9, 1, 4, 2}, 3},
	}
	for _, tt := range tests {
		if got := medianRounds(tt.in); got != tt.want {
			t.Errorf("medianRounds(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFormatThousands(t *testing.T) {
	for in, want := range map[float64]string{12.25: "12.2", 999: "999", 1237: "1,237", 1234567: "1,234,567", 1655.4: "1,655"} {
		if got := formatThousands(in); got != want {
			t.Errorf("formatThousands(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkdownAgainstRelay(t *testing.T) {
	r := &report{}
	r.add("rounds", "", 3, "")
	r.add("latency_p50", "floor", 40, "µs")
	r.add("latency_p99", "floor", 100, "µs")
	r.add("burst_cost", "ip-monitor>/dev/null", 15, "µs/msg")
	r.add("latency_p50", "relay", 60, "µs")
	r.add("latency_p99", "relay", 200, "µs")
	r.add("burst_cost", "relay", 20, "µs/msg")
	r.add("latency_p50", "nlbridge", 66, "µs")  // 1.10×: met, at the limit
	r.add("latency_p99", "nlbridge", 320, "µs") // 1.60×: not met
	r.add("burst_cost", "nlbridge", 19, "µs/msg")
	r.add("latency_runq_wait", "nlbridge", 12, "µs/change")
	var b strings.Builder
	r.printMarkdown(&b)
	for _, want := range []string{
		"| path (alone, median of 3 rounds) |",
		"| floor: a netlink socket read in the benchmark | 40 µs | 100 µs | `ip -o monitor >/dev/null`: 15 µs |  |  |  |",
		"| nlbridge | 66 µs | 320 µs | 19 µs | 1.10× / 1.60× / 0.95× | met / **not met** / met | 12 µs |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "pipeline") {
		t.Errorf("markdown has a row for the pipeline, which was not measured:\n%s", b.String())
	}
	var verdicts []string
	for _, l := range r.targets() {
		if strings.Contains(l, "relay's") {
			verdicts = append(verdicts, strings.Fields(l)[0])
		}
	}
	if got := strings.Join(verdicts, " "); got != "met NOT met" {
		t.Errorf("verdicts against the relay: %q, want p50 met, p99 NOT MET, CPU met", got)
	}
}
