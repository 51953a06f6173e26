package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress reports a long pass over a known number of items on stderr. On a terminal it
// keeps one line up to date ("resealing 1200/5000 [=====>    ] 24%"), redrawn at most
// every redrawEvery; elsewhere (a log file, a CI job) it writes a plain line each time
// another tenth is done, so logs stay short. It is not safe for concurrent use.
type progress struct {
	w     io.Writer
	label string
	total int
	tty   bool
	now   func() time.Time

	done     int
	lastDraw time.Time
	lastTick int // the last tenth reported, off a terminal
	drawn    bool
}

// redrawEvery bounds how often a terminal line is redrawn.
const redrawEvery = 100 * time.Millisecond

// barWidth is the width of the bar between the brackets.
const barWidth = 30

// newProgress returns a progress of total items on w, labelled label. Whether w is a
// terminal is decided once, here.
func newProgress(w io.Writer, label string, total int) *progress {
	return &progress{w: w, label: label, total: total, tty: isTerminal(w), now: time.Now}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// update records that done items are done.
func (p *progress) update(done int) {
	p.done = done
	if p.tty {
		if t := p.now(); !p.drawn || t.Sub(p.lastDraw) >= redrawEvery {
			p.lastDraw = t
			p.draw()
		}
		return
	}
	if tick := p.percent() / 10; tick > p.lastTick {
		p.lastTick = tick
		fmt.Fprintf(p.w, "%s %d/%d (%d%%)\n", p.label, done, p.total, p.percent())
	}
}

// finish draws the final state and ends the terminal line. A pass that found nothing to
// do off a terminal prints nothing.
func (p *progress) finish() {
	if p.tty {
		p.draw()
		fmt.Fprintln(p.w)
		return
	}
	if p.done > 0 && p.percent()/10 > p.lastTick {
		fmt.Fprintf(p.w, "%s %d/%d (%d%%)\n", p.label, p.done, p.total, p.percent())
	}
}

// percent is how much is done, 0 to 100. Items added since the total was counted may
// take done past total; the bar then stays full.
func (p *progress) percent() int {
	if p.total <= 0 {
		return 100
	}
	return min(100, p.done*100/p.total)
}

func (p *progress) draw() {
	p.drawn = true
	fmt.Fprintf(p.w, "\r%s %d/%d %s %d%%", p.label, p.done, p.total, bar(p.percent()), p.percent())
}

// bar draws percent as [=====>    ].
func bar(percent int) string {
	n := percent * barWidth / 100
	switch {
	case n >= barWidth:
		return "[" + strings.Repeat("=", barWidth) + "]"
	case n == 0:
		return "[" + strings.Repeat(" ", barWidth) + "]"
	}
	return "[" + strings.Repeat("=", n-1) + ">" + strings.Repeat(" ", barWidth-n) + "]"
}
