package webui

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

type stateCount struct {
	State string
	Count int
}

type overviewData struct {
	Total         int
	States        []stateCount
	Chart         *chart
	ChartNote     string
	Reconnect     []*tokenkeeper.Record
	MoreReconnect bool
}

// reconnectShown is how many reconnect_required connections the overview
// lists.
const reconnectShown = 10

// overview serves GET /ui/: counts by state, the chart, and the
// connections that need a customer.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	counts, err := s.cfg.Store.CountConnections(ctx)
	if err != nil {
		s.storeFailed(w, r, sess, err)
		return
	}
	d := overviewData{}
	for _, st := range []tokenkeeper.State{tokenkeeper.StateActive, tokenkeeper.StateReconnectRequired, tokenkeeper.StateDisconnected} {
		d.States = append(d.States, stateCount{string(st), counts[st]})
		d.Total += counts[st]
	}
	recs, err := s.cfg.Store.ListConnections(ctx, tokenkeeper.ConnectionFilter{State: tokenkeeper.StateReconnectRequired, Limit: reconnectShown + 1})
	if err != nil {
		s.storeFailed(w, r, sess, err)
		return
	}
	if len(recs) > reconnectShown {
		recs, d.MoreReconnect = recs[:reconnectShown], true
	}
	d.Reconnect = recs
	if s.cfg.RefreshesPerMinute == nil {
		d.ChartNote = "Refresh counts are not configured in this service."
	} else {
		now := s.cfg.Now().UTC().Truncate(time.Minute)
		since := now.Add(-(chartMinutes - 1) * time.Minute)
		buckets, err := s.cfg.RefreshesPerMinute(ctx, since)
		if err != nil {
			s.log.WarnContext(ctx, "webui: refreshes per minute", "error", err)
			d.ChartNote = "Refresh counts could not be read just now; reload to try again."
		} else {
			d.Chart = newChart(since, buckets)
		}
	}
	s.render(w, r, sess, http.StatusOK, "overview", "Overview", "overview", d)
}

// storeFailed answers a failed read of the store.
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	if tokenkeeper.ErrorCode(err) == tokenkeeper.CodeUnavailable {
		s.log.WarnContext(r.Context(), "webui: the store is unavailable", "error", err)
		s.fail(w, r, sess, http.StatusServiceUnavailable, "The store is unavailable", "Wait a moment, then reload the page.")
		return
	}
	s.log.ErrorContext(r.Context(), "webui: read the store", "error", err)
	s.fail(w, r, sess, http.StatusInternalServerError, "Something went wrong", "The page could not be read from the store. Reload to try again; the log has the cause.")
}

// chartMinutes is the span of the overview's chart.
const chartMinutes = 60

// chart is a bar chart drawn as SVG by the template: no library, no
// script. Each minute has a refresh bar and, beside it, a failure bar.
type chart struct {
	Width, Height, Left, Right, Bottom, LabelY int
	Max                                        int
	FirstLabel, LastLabel, Summary             string
	Bars                                       []bar
}

type bar struct {
	Class      string
	X, Y, W, H int
	Label      string
}

func newChart(since time.Time, buckets []Bucket) *chart {
	const width, height, left, right, top, bottom = 720, 180, 4, 716, 20, 150
	byMinute := make(map[int64]Bucket, len(buckets))
	total, failures, peak := 0, 0, 1
	for _, b := range buckets {
		i := int64(b.Start.Sub(since) / time.Minute)
		if i < 0 || i >= chartMinutes {
			continue
		}
		byMinute[i] = b
		total += b.Refreshes
		failures += b.Failures
		peak = max(peak, b.Refreshes, b.Failures)
	}
	c := &chart{Width: width, Height: height, Left: left, Right: right, Bottom: bottom, LabelY: height - 8, Max: peak,
		FirstLabel: since.Format("15:04") + " UTC", LastLabel: since.Add((chartMinutes-1)*time.Minute).Format("15:04") + " UTC",
		Summary: fmt.Sprintf("%s and %s in the last hour (at most %d in a minute).",
			plural(total, "refresh", "refreshes"), plural(failures, "failure", "failures"), peak)}
	slot := (right - left) / chartMinutes
	barW := max(1, slot/2-1)
	for i := 0; i < chartMinutes; i++ {
		b, ok := byMinute[int64(i)]
		if !ok {
			continue
		}
		x := left + i*slot
		at := since.Add(time.Duration(i) * time.Minute).Format("15:04")
		if b.Refreshes > 0 {
			h := max(1, b.Refreshes*(bottom-top)/peak)
			c.Bars = append(c.Bars, bar{"refresh", x, bottom - h, barW, h, fmt.Sprintf("%s: %d refreshes", at, b.Refreshes)})
		}
		if b.Failures > 0 {
			h := max(1, b.Failures*(bottom-top)/peak)
			c.Bars = append(c.Bars, bar{"failure", x + barW + 1, bottom - h, barW, h, fmt.Sprintf("%s: %d failures", at, b.Failures)})
		}
	}
	return c
}

// plural says "1 refresh" or "3 refreshes".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
