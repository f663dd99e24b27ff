//go:build linux

package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"image/color"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// result is one measurement: a row of results.csv.
type result struct {
	name, receiver string
	value          float64
	unit           string
}

// scalePoint is what the scaling phase measured at one number of pairs.
type scalePoint struct {
	pairs          int
	bridgeMs, ipMs float64 // median dump times
	peakMiB        float64 // nlbridge VmHWM
}

// report collects the results of one run. It is used by one goroutine.
type report struct {
	// rows are the measurements in the order taken.
	rows []result
	// latency holds each receiver's latency samples, of every round.
	latency map[string][]time.Duration
	// receivers orders the latency receivers.
	receivers []string
	// paths are the paths measured in rounds, in round order.
	paths []string
	// scaling holds the scaling phase's points; idleMiB is the idle RSS.
	scaling []scalePoint
	idleMiB float64
	// leanIdleMiB is the idle RSS of the build without the embedded
	// NATS server.
	leanIdleMiB float64
	// notes are said under the table (skipped parts, warnings).
	notes []string
}

func (r *report) add(name, receiver string, value float64, unit string) {
	r.rows = append(r.rows, result{name, receiver, value, unit})
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// get returns the value of a row.
func (r *report) get(name, receiver string) (float64, bool) {
	for _, x := range r.rows {
		if x.name == name && x.receiver == receiver {
			return x.value, true
		}
	}
	return 0, false
}

// addSamples keeps a receiver's latency samples for the chart.
func (r *report) addSamples(receiver string, samples []time.Duration) {
	s := slices.Clone(samples)
	slices.Sort(s)
	if r.latency == nil {
		r.latency = map[string][]time.Duration{}
	}
	r.latency[receiver] = s
	r.receivers = append(r.receivers, receiver)
}

// percentile returns the q-th percentile (nearest rank) of sorted samples.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
func millis(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// writeCSV writes every row to path.
func (r *report) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"name", "receiver", "value", "unit"})
	for _, x := range r.rows {
		w.Write([]string{x.name, x.receiver, strconv.FormatFloat(x.value, 'f', -1, 64), x.unit})
	}
	w.Flush()
	return errors.Join(w.Error(), f.Close())
}

// printTable writes the rows, the target checks and the notes.
func (r *report) printTable(out io.Writer) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "measurement\treceiver\tvalue\tunit\t")
	for _, x := range r.rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t\n", x.name, x.receiver, format(x.value), x.unit)
	}
	w.Flush()
	fmt.Fprintln(out, "\ntargets (same run):")
	for _, t := range r.targets() {
		fmt.Fprintln(out, "  "+t)
	}
	fmt.Fprintln(out, "\nREADME table (markdown):")
	fmt.Fprintln(out)
	r.printMarkdown(out)
	fmt.Fprintln(out)
	for _, n := range r.notes {
		fmt.Fprintln(out, "note: "+n)
	}
}

func format(v float64) string {
	switch {
	case v == float64(int64(v)):
		return strconv.FormatInt(int64(v), 10)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// targets checks the targets against this run's numbers. A target
// whose numbers were not measured says so.
func (r *report) targets() []string {
	var out []string
	check := func(what string, ok bool, detail string, args ...any) {
		verdict := "NOT MET"
		if ok {
			verdict = "met"
		}
		out = append(out, fmt.Sprintf("%-7s %s: %s", verdict, what, fmt.Sprintf(detail, args...)))
	}
	missing := func(what, why string) { out = append(out, fmt.Sprintf("%-7s %s: %s", "n/a", what, why)) }

	if len(r.againstRelay("nlbridge")) == 0 {
		missing("nlbridge against the relay", "not measured")
	}
	for _, c := range r.againstRelay("nlbridge") {
		check(fmt.Sprintf("%s ≤ %.1f× the relay's", c.what, c.limit), c.met(), "%s / %s µs = %.2f×", format(c.value), format(c.relay), c.ratio())
	}
	if lost, ok := r.get("burst_lost", "nlbridge"); ok {
		want, _ := r.get("burst_expected", "")
		check("burst: nlbridge sees every event", lost == 0, "%.0f of %.0f lost over %s rounds", lost, want, format(r.value("rounds", "")))
		fl, _ := r.get("burst_last_floor", "nlbridge")
		bl, _ := r.get("burst_last", "nlbridge")
		check("burst: last event within 1.1× the floor's last", bl <= 1.1*fl, "%.1f / %.1f ms = %.2f×", bl, fl, bl/fl)
	}
	bc, ok1 := r.get("burst_cost", "nlbridge")
	for _, p := range r.scaling {
		if p.pairs != 2000 && p.pairs != 5000 {
			continue
		}
		check(fmt.Sprintf("dump of %d pairs ≤ 1.2× `ip -j`", p.pairs), p.bridgeMs <= 1.2*p.ipMs,
			"%.0f / %.0f ms = %.2f×", p.bridgeMs, p.ipMs, p.bridgeMs/p.ipMs)
	}
	kc, ok3 := r.get("burst_cost", "nlbridge-kv")
	bp50, ok2 := r.get("latency_p50", "nlbridge")
	if ok1 && ok3 {
		check("state bucket: CPU per kernel message ≤ 2× without it", kc <= 2*bc, "%.2f / %.2f µs = %.2f×", kc, bc, kc/bc)
	}
	if kp50, ok := r.get("latency_p50", "nlbridge-kv"); ok && ok2 {
		check("state bucket: latency p50 ≤ 1.1× without it", kp50 <= 1.1*bp50, "%.0f / %.0f µs = %.2f×", kp50, bp50, kp50/bp50)
	}
	if kd, ok := r.get("dump_2000pairs", "nlbridge-kv"); ok {
		bd, _ := r.get("dump_2000pairs", "nlbridge-json")
		check("state bucket: dump of 2000 pairs ≤ 2× without it", kd <= 2*bd, "%.0f / %.0f ms = %.2f×", kd, bd, kd/bd)
	}
	if st, ok := r.get("kv_stale_startup", "nlbridge-kv-stale"); ok {
		check("state bucket: startup reconciliation of 10,000 stale keys < 2 s", st < 2000, "%.0f ms more to the startup SYNC", st)
	}
	if r.idleMiB > 0 {
		check("RSS < 12 MiB idle", r.idleMiB < 12, "%.1f MiB", r.idleMiB)
	}
	if r.leanIdleMiB > 0 {
		check("RSS < 12 MiB idle, built without the embedded NATS server (-tags noembedded)", r.leanIdleMiB < 12, "%.1f MiB", r.leanIdleMiB)
	}
	for _, p := range r.scaling {
		if p.pairs == 2000 {
			check("RSS < 30 MiB with 2,000 pairs", p.peakMiB < 30, "%.1f MiB", p.peakMiB)
		}
	}
	return out
}

// value returns the value of a row, or 0.
func (r *report) value(name, receiver string) float64 {
	v, _ := r.get(name, receiver)
	return v
}

// vsRelay is one of a path's figures against the relay's, and its target.
type vsRelay struct {
	what, unit   string
	value, relay float64
	limit        float64
}

func (c vsRelay) ratio() float64 { return c.value / c.relay }
func (c vsRelay) met() bool      { return c.value <= c.limit*c.relay }

// againstRelay returns path's p50, p99 and CPU per kernel message against
// the relay's, with the targets: at most 1.1×, 1.5× and 1.0×. A figure
// missing on either side is left out.
func (r *report) againstRelay(path string) []vsRelay {
	var out []vsRelay
	for _, t := range []struct {
		what, name, unit string
		limit            float64
	}{{"latency p50", "latency_p50", "µs", 1.1}, {"latency p99", "latency_p99", "µs", 1.5}, {"CPU per kernel message", "burst_cost", "µs", 1.0}} {
		v, ok1 := r.get(t.name, path)
		rv, ok2 := r.get(t.name, "relay")
		if ok1 && ok2 && rv > 0 {
			out = append(out, vsRelay{what: t.what, unit: t.unit, value: v, relay: rv, limit: t.limit})
		}
	}
	return out
}

// printMarkdown writes the README's table of paths: latency and CPU per
// kernel message, each path alone, the median over rounds, with the
// ratios to the relay and the targets met.
func (r *report) printMarkdown(out io.Writer) {
	us := func(name, receiver string) string {
		v, ok := r.get(name, receiver)
		if !ok {
			return ""
		}
		return formatThousands(v) + " µs"
	}
	rows := []struct{ name, label string }{
		{"floor", "floor: a netlink socket read in the benchmark"},
		{"relay", "relay: each datagram's messages as `PUB` lines, one `write(2)`"},
		{"nlbridge", "nlbridge"},
		{"nlbridge-embedded", "nlbridge, subscriber on its embedded server (CPU: the server's included)"},
		{"nlbridge-kv", "nlbridge with the state bucket"},
		{"pipeline", "pipeline: `ip -o monitor \\| nats pub`"},
	}
	fmt.Fprintf(out, "| path (alone, median of %s rounds) | latency p50 | p99 | CPU per kernel message | against the relay: p50 / p99 / CPU | target ≤ 1.1× / 1.5× / 1.0× | waited for a CPU, per change |\n", format(r.value("rounds", "")))
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|")
	for _, row := range rows {
		p50, p99 := us("latency_p50", row.name), us("latency_p99", row.name)
		if p50 == "" {
			continue
		}
		cpu := us("burst_cost", row.name)
		if row.name == "floor" {
			cpu = us("burst_cost", "ip-monitor>/dev/null")
			if cpu != "" {
				cpu = "`ip -o monitor >/dev/null`: " + cpu
			}
		}
		var ratios, verdict []string
		if row.name != "floor" && row.name != "relay" {
			for _, c := range r.againstRelay(row.name) {
				ratios = append(ratios, fmt.Sprintf("%.2f×", c.ratio()))
				if row.name == "nlbridge" {
					v := "met"
					if !c.met() {
						v = "**not met**"
					}
					verdict = append(verdict, v)
				}
			}
		}
		wait := us("latency_runq_wait", row.name)
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s | %s | %s |\n", row.label, p50, p99, cpu, strings.Join(ratios, " / "), strings.Join(verdict, " / "), wait)
	}
}

// formatThousands formats v as format does, with a comma between
// thousands for values of 1,000 and more.
func formatThousands(v float64) string {
	s := format(v)
	if v < 1000 {
		return s
	}
	i := strings.IndexByte(s, '.')
	if i < 0 {
		i = len(s)
	}
	for j := i - 3; j > 0; j -= 3 {
		s = s[:j] + "," + s[j:]
	}
	return s
}

// latencyChart draws each receiver's latency CDF, on a log time axis.
func (r *report) latencyChart(path string) error {
	p := plot.New()
	p.Title.Text = "MTU change → receipt, CDF (each path alone, every round)"
	p.X.Label.Text = "latency (µs, log scale)"
	p.Y.Label.Text = "fraction of changes"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = false, false // the lower right is empty
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(-6), vg.Points(6)
	for i, name := range r.receivers {
		s := r.latency[name]
		xys := make(plotter.XYs, len(s))
		for j, d := range s {
			xys[j] = plotter.XY{X: max(micros(d), 1), Y: float64(j+1) / float64(len(s))}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = palette[i%len(palette)]
		l.Width = vg.Points(2)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (p50 %.0f µs, p99 %.0f µs, all rounds)", name, micros(percentile(s, 50)), micros(percentile(s, 99))), l)
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// palette tells the receivers apart.
var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}

// scalingChart draws dump time (nlbridge JSON against `ip -j`) and
// nlbridge's peak RSS against the number of veth pairs, side by side.
func (r *report) scalingChart(path string) error {
	dump := plot.New()
	dump.Title.Text = "full dump: request → all links and addresses"
	dump.X.Label.Text = "veth pairs (each end with IPv4 + IPv6)"
	dump.Y.Label.Text = "time (ms, median)"
	dump.Add(plotter.NewGrid())
	dump.Legend.Top, dump.Legend.Left = true, true
	var bridge, ip, rss plotter.XYs
	rss = append(rss, plotter.XY{X: 0, Y: r.idleMiB})
	for _, s := range r.scaling {
		bridge = append(bridge, plotter.XY{X: float64(s.pairs), Y: s.bridgeMs})
		ip = append(ip, plotter.XY{X: float64(s.pairs), Y: s.ipMs})
		rss = append(rss, plotter.XY{X: float64(s.pairs), Y: s.peakMiB})
	}
	for i, set := range []struct {
		name string
		xys  plotter.XYs
	}{{"nlbridge (JSON, NATS subscriber)", bridge}, {"ip -j link show + ip -j addr show", ip}} {
		if err := addLinePoints(dump, set.name, set.xys, palette[i]); err != nil {
			return err
		}
	}
	dump.Y.Min = 0

	mem := plot.New()
	mem.Title.Text = "nlbridge peak RSS (VmHWM)"
	mem.X.Label.Text = "veth pairs (0 = idle after startup)"
	mem.Y.Label.Text = "MiB"
	mem.Add(plotter.NewGrid())
	mem.Legend.Top, mem.Legend.Left = true, true
	if err := addLinePoints(mem, "nlbridge VmHWM", rss, palette[0]); err != nil {
		return err
	}
	mem.Y.Min = 0

	const w, h = 12 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	dump.Draw(tiles.At(dc, 0, 0))
	mem.Draw(tiles.At(dc, 1, 0))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(f)
	return errors.Join(err, f.Close())
}

// addLinePoints adds a line with its points, in legend as name.
func addLinePoints(p *plot.Plot, name string, xys plotter.XYs, c color.Color) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, l.Width = c, vg.Points(2)
	s.Color, s.Shape = c, draw.CircleGlyph{}
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}
