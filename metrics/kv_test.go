package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/nlbridge/nlbridge/sink"
)

// With a state bucket, its writes, failures, pending keys and
// reachability are metrics; without one they are left out.
func TestMetricsKV(t *testing.T) {
	src, _, _ := fake()
	if mfs := scrape(t, serveTest(t, src).URL); mfs["nlbridge_kv_writes_total"] != nil || len(mfs["nlbridge_up"].Metric) != 2 {
		t.Errorf("without a bucket: kv metrics %v, nlbridge_up %v", mfs["nlbridge_kv_writes_total"], mfs["nlbridge_up"])
	}
	src.KV = func() sink.KVStats {
		return sink.KVStats{Enabled: true, Writes: 301, Failures: 302, Pending: 303, Reachable: true}
	}
	mfs := scrape(t, serveTest(t, src).URL)
	for _, w := range []struct {
		name  string
		typ   dto.MetricType
		value float64
	}{
		{"nlbridge_kv_writes_total", dto.MetricType_COUNTER, 301},
		{"nlbridge_kv_write_failures_total", dto.MetricType_COUNTER, 302},
		{"nlbridge_kv_pending_keys", dto.MetricType_GAUGE, 303},
	} {
		mf := mfs[w.name]
		if mf == nil || mf.GetType() != w.typ || len(mf.Metric) != 1 || mf.GetHelp() == "" {
			t.Errorf("%s = %v, want one %v with help", w.name, mf, w.typ)
			continue
		}
		if got := mf.Metric[0].GetCounter().GetValue() + mf.Metric[0].GetGauge().GetValue(); got != w.value {
			t.Errorf("%s = %v, want %v", w.name, got, w.value)
		}
	}
	up := map[string]float64{}
	for _, m := range mfs["nlbridge_up"].GetMetric() {
		up[m.Label[0].GetValue()] = m.GetGauge().GetValue()
	}
	if len(up) != 3 || up["kv"] != 1 {
		t.Errorf("nlbridge_up = %v, want netlink, nats and kv 1", up)
	}
}
