package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// curvePoint is one level of the sessions curve: medians at x concurrent
// students.
type curvePoint struct {
	x, rate, p50, p99 float64
}

// chartPath is where a chart goes: beside the results file (bench/).
func chartPath(name string) string { return filepath.Join(filepath.Dir(*outFlag), name) }

// writeSessionsChart draws the sessions curve as a PNG: sessions per second
// above, latency p50 and p99 below, against concurrent students (log scale).
func writeSessionsChart(path string, pts []curvePoint) error {
	rate, p50, p99 := make(plotter.XYs, len(pts)), make(plotter.XYs, len(pts)), make(plotter.XYs, len(pts))
	for i, p := range pts {
		rate[i] = plotter.XY{X: p.x, Y: p.rate}
		p50[i] = plotter.XY{X: p.x, Y: p.p50}
		p99[i] = plotter.XY{X: p.x, Y: p.p99}
	}
	top := curvePlot("Board sessions/s (ECDSA P-256, dial to verified receipt)", "sessions/s", pts)
	if err := addLine(top, "sessions/s", rate, 0); err != nil {
		return err
	}
	bottom := curvePlot("Latency per session", "ms", pts)
	if err := addLine(bottom, "p50", p50, 1); err != nil {
		return err
	}
	if err := addLine(bottom, "p99", p99, 2); err != nil {
		return err
	}
	return savePlots(path, 8*vg.Inch, 8*vg.Inch, top, bottom)
}

// curvePlot is a plot against concurrent students, ticks at the levels.
func curvePlot(title, ylabel string, pts []curvePoint) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "concurrent students"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for _, pt := range pts {
		ticks = append(ticks, plot.Tick{Value: pt.x, Label: strconv.FormatFloat(pt.x, 'f', -1, 64)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	if len(pts) > 0 {
		p.X.Min, p.X.Max = pts[0].x/1.3, pts[len(pts)-1].x*1.3
	}
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	return p
}

// addLine adds a line with points, in the i-th colour of the palette.
func addLine(p *plot.Plot, name string, xys plotter.XYs, i int) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("chart %s: %w", name, err)
	}
	palette := [...][3]uint8{{0x1f, 0x77, 0xb4}, {0x2c, 0xa0, 0x2c}, {0xd6, 0x27, 0x28}}
	rgb := palette[i%len(palette)]
	l.Color = rgbColor(rgb)
	s.Color = rgbColor(rgb)
	l.Width = vg.Points(2)
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

// savePlots writes plots one above the other into one PNG.
func savePlots(path string, w, h vg.Length, plots ...*plot.Plot) error {
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadX: vg.Points(4), PadY: vg.Points(12)}
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	canvases := plot.Align(grid, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func rgbColor(c [3]uint8) color.RGBA { return color.RGBA{R: c[0], G: c[1], B: c[2], A: 0xff} }
