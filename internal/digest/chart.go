package digest

import (
	"bytes"
	"cmp"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"slices"
	"strconv"
	"strings"
)

// Chart image size in pixels.
const (
	ChartWidth  = 800
	ChartHeight = 340
)

// ChartCID is the Content-ID the HTML refers to the chart by ("cid:" URL):
// an email carries the PNG as an inline part with this Content-ID.
const ChartCID = "chart@kvwatch"

// maxChartSeries: more vaults than this are drawn as the largest ones and
// "others".
const maxChartSeries = 8

// palette is Okabe and Ito's colour-blind-safe set; "others" are grey.
var palette = []color.RGBA{
	{0x00, 0x72, 0xB2, 0xff}, {0xE6, 0x9F, 0x00, 0xff}, {0x00, 0x9E, 0x73, 0xff}, {0xCC, 0x79, 0xA7, 0xff},
	{0x56, 0xB4, 0xE9, 0xff}, {0xD5, 0x5E, 0x00, 0xff}, {0xF0, 0xE4, 0x42, 0xff},
}

var (
	colOthers = color.RGBA{0x99, 0x99, 0x99, 0xff}
	colAxis   = color.RGBA{0x33, 0x33, 0x33, 0xff}
	colGrid   = color.RGBA{0xe3, 0xe3, 0xe3, 0xff}
	colText   = color.RGBA{0x22, 0x22, 0x22, 0xff}
	colBg     = color.RGBA{0xff, 0xff, 0xff, 0xff}
)

// LegendEntry is a series of the chart and its colour (#rrggbb).
type LegendEntry struct {
	Name  string
	Color string
	Total int64
}

// series returns what the chart draws: at most maxChartSeries series (the
// largest vaults, then "others"), each with its colour.
func series(ch *Chart) ([]ChartSeries, []color.RGBA) {
	ss := slices.Clone(ch.Series)
	if len(ss) > maxChartSeries {
		total := func(s ChartSeries) (n int64) {
			for _, c := range s.Counts {
				n += c
			}
			return n
		}
		slices.SortStableFunc(ss, func(a, b ChartSeries) int { return cmp.Compare(total(b), total(a)) })
		others := ChartSeries{Vault: fmt.Sprintf("%d others", len(ss)-(maxChartSeries-1)), Counts: make([]int64, len(ch.Slots))}
		for _, s := range ss[maxChartSeries-1:] {
			for i, c := range s.Counts {
				others.Counts[i] += c
			}
		}
		ss = append(ss[:maxChartSeries-1], others)
	}
	cols := make([]color.RGBA, len(ss))
	for i := range ss {
		cols[i] = palette[i%len(palette)]
		if len(ch.Series) > maxChartSeries && i == len(ss)-1 {
			cols[i] = colOthers
		}
	}
	return ss, cols
}

// Legend lists the chart's series and colours, for renderers that draw the
// legend themselves.
func Legend(r *Report) []LegendEntry {
	ss, cols := series(&r.Chart)
	out := make([]LegendEntry, len(ss))
	for i, s := range ss {
		var n int64
		for _, c := range s.Counts {
			n += c
		}
		out[i] = LegendEntry{Name: s.Vault, Color: fmt.Sprintf("#%02x%02x%02x", cols[i].R, cols[i].G, cols[i].B), Total: n}
	}
	return out
}

// niceStep returns a tick step (1, 2 or 5 × 10^k) giving at most 5 ticks
// up to max.
func niceStep(max int64) int64 {
	if max <= 0 {
		return 1
	}
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if s := m * p; max/s < 5 || (max/s == 5 && max%s == 0) {
				return s
			}
		}
	}
}

// tickLabel writes a tick value, in thousands (or millions) when the
// axis reaches that far and the value allows.
func tickLabel(v, top int64) string {
	switch {
	case top >= 10_000_000 && v%1_000_000 == 0 && v > 0:
		return strconv.FormatInt(v/1_000_000, 10) + "m"
	case top >= 10_000 && v%1000 == 0 && v > 0:
		return strconv.FormatInt(v/1000, 10) + "k"
	}
	return Num(v)
}

// ChartPNG draws the request volume per slot (hours of a daily digest,
// days otherwise) and vault as stacked bars, with axes, grid, labels and a
// legend, and encodes it as PNG.
func ChartPNG(r *Report) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, ChartWidth, ChartHeight))
	draw.Draw(img, img.Rect, &image.Uniform{colBg}, image.Point{}, draw.Src)
	ch := &r.Chart
	ss, cols := series(ch)

	title := "requests per " + ch.Unit + " (" + r.Zone + ")"
	drawText(img, 16, 12, title, 2, colText)

	left, right, top, bottom := 64, ChartWidth-16, 44, ChartHeight-64
	n := len(ch.Slots)
	var max int64
	for i := 0; i < n; i++ {
		var sum int64
		for _, s := range ss {
			sum += s.Counts[i]
		}
		max = maxInt(max, sum)
	}
	step := niceStep(max)
	ceil := (max + step - 1) / step * step
	if ceil == 0 {
		ceil = step
	}
	y := func(v int64) int { return bottom - int(float64(v)/float64(ceil)*float64(bottom-top)+0.5) }

	// Grid and y labels.
	for v := int64(0); v <= ceil; v += step {
		yy := y(v)
		hline(img, left, right, yy, colGrid)
		l := tickLabel(v, ceil)
		drawText(img, left-8-textWidth(l, 1), yy-3, l, 1, colText)
	}

	// Bars.
	if n > 0 {
		slotW := float64(right-left) / float64(n)
		barW := maxInt(1, int(slotW*0.72))
		for i := 0; i < n; i++ {
			x0 := left + int(float64(i)*slotW+(slotW-float64(barW))/2)
			var acc int64
			for si, s := range ss {
				c := s.Counts[i]
				if c == 0 {
					continue
				}
				y0, y1 := y(acc+c), y(acc)
				fill(img, x0, y0, x0+barW, y1, cols[si])
				acc += c
			}
		}
		// X labels: as many as fit.
		labels := make([]string, n)
		for i, t := range ch.Slots {
			switch {
			case ch.Unit == "hour":
				labels[i] = t.Format("15")
			case n <= 7:
				labels[i] = strings.ToLower(t.Format("Mon 2"))
			default:
				labels[i] = t.Format("2")
			}
		}
		every := 1
		for every < n && float64(every)*slotW < float64(textWidth(labels[0], 1)+8) {
			every++
		}
		if ch.Unit == "hour" && every < 3 && n > 12 {
			every = 3
		}
		for i := 0; i < n; i += every {
			cx := left + int(float64(i)*slotW+slotW/2)
			vline(img, cx, bottom, bottom+4, colAxis)
			drawText(img, cx-textWidth(labels[i], 1)/2, bottom+8, labels[i], 1, colText)
		}
	}

	// Axes.
	hline(img, left, right, bottom, colAxis)
	vline(img, left, top, bottom, colAxis)

	// Legend: a swatch and a name per series, wrapping.
	lx, ly := left, ChartHeight-36
	for i, s := range ss {
		name := s.Vault
		if len([]rune(name)) > 40 {
			name = string([]rune(name)[:39]) + "."
		}
		w := 14 + textWidth(name, 1) + 18
		if lx+w > right && lx > left {
			lx, ly = left, ly+14
		}
		fill(img, lx, ly, lx+10, ly+10, cols[i])
		drawText(img, lx+14, ly+2, name, 1, colText)
		lx += w
	}

	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("digest: chart: %w", err)
	}
	return buf.Bytes(), nil
}

func maxInt[T int | int64](a, b T) T {
	if a > b {
		return a
	}
	return b
}

func fill(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1).Intersect(img.Rect), &image.Uniform{c}, image.Point{}, draw.Src)
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) { fill(img, x0, y, x1+1, y+1, c) }
func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) { fill(img, x, y0, x+1, y1+1, c) }
