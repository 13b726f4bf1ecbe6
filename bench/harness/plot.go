package harness

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WritePlot draws W2's median throughput and p99 latency by concurrency, one line per subject,
// side by side, to file: SVG or PNG by its extension.
func (r *Results) WritePlot(file string) error {
	cases := r.Cases("W2")
	if len(cases) == 0 {
		return fmt.Errorf("harness: no W2 results to plot")
	}
	tput, p99 := plot.New(), plot.New()
	tput.Title.Text = "W2 throughput (median)"
	tput.Y.Label.Text = "requests / s"
	p99.Title.Text = "W2 p99 latency (median)"
	p99.Y.Label.Text = "p99 (ms)"
	for _, p := range []*plot.Plot{tput, p99} {
		p.X.Label.Text = "concurrency"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = concurrencyTicks(cases)
		p.Add(plotter.NewGrid())
	}
	// One legend, where the p99 lines leave room: they rise from left to right.
	p99.Legend.Top, p99.Legend.Left = true, true
	p99.Y.Scale = plot.LogScale{}
	p99.Y.Tick.Marker = plot.LogTicks{Prec: -1}

	for i, s := range r.SubjectsIn("W2", cases[0]) {
		var tp, lp plotter.XYs
		for _, c := range cases {
			n, err := strconv.Atoi(strings.TrimPrefix(c, "c="))
			if err != nil {
				continue
			}
			if st, ok := r.Stat("W2", c, s, "req/s"); ok {
				tp = append(tp, plotter.XY{X: float64(n), Y: st.Median})
			}
			if st, ok := r.Stat("W2", c, s, "p99-ms"); ok && st.Median > 0 {
				lp = append(lp, plotter.XY{X: float64(n), Y: st.Median})
			}
		}
		for j, pts := range []plotter.XYs{tp, lp} {
			if len(pts) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			line.Color, points.Color = subjectColor(i), subjectColor(i)
			points.Shape = plotutil.Shape(i)
			if s == "engine" || s == "raw" {
				line.Width = vg.Points(2)
			}
			p := []*plot.Plot{tput, p99}[j]
			p.Add(line, points)
			if p == p99 {
				p.Legend.Add(s, line, points)
			}
		}
	}
	tput.Y.Min = 0
	for _, p := range []*plot.Plot{tput, p99} { // room for the first and last tick labels
		p.X.Min /= 1.5
		p.X.Max *= 1.5
	}

	w, h := 28*vg.Centimeter, 11*vg.Centimeter
	var canvas vg.CanvasWriterTo
	switch strings.ToLower(filepath.Ext(file)) {
	case ".svg":
		canvas = vgsvg.New(w, h)
	case ".png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110), vgimg.UseBackgroundColor(color.White))}
	default:
		return fmt.Errorf("harness: plot %s: use .svg or .png", file)
	}
	dc := draw.New(canvas)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadY: vg.Millimeter, PadTop: vg.Millimeter, PadBottom: vg.Millimeter, PadLeft: vg.Millimeter, PadRight: vg.Millimeter}
	plots := [][]*plot.Plot{{tput, p99}}
	for i, c := range plot.Align(plots, tiles, dc)[0] {
		plots[0][i].Draw(c)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// concurrencyTicks puts a labelled tick at each measured concurrency.
func concurrencyTicks(cases []string) plot.Ticker {
	var ticks plot.ConstantTicks
	for _, c := range cases {
		if n, err := strconv.Atoi(strings.TrimPrefix(c, "c=")); err == nil {
			ticks = append(ticks, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
		}
	}
	return ticks
}

// subjectColor is a distinct colour per subject.
func subjectColor(i int) color.Color {
	palette := []color.RGBA{
		{0, 0, 0, 255}, {31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {148, 103, 189, 255},
		{140, 86, 75, 255}, {214, 39, 40, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	}
	return palette[i%len(palette)]
}
