package webui

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"strings"
	"time"
)

// assets holds the templates, the stylesheet and the one script, compiled
// into the binary: nothing is read from disk at run time.
//
//go:embed assets/templates/*.html assets/static/*
var assets embed.FS

// static is what /ui/static/ serves.
var static, _ = fs.Sub(assets, "assets/static")

// styleCSS is the stylesheet, also inlined into the connect pages.
var styleCSS = mustRead("assets/static/style.css")

func mustRead(name string) string {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// funcs are the template functions.
var funcs = template.FuncMap{
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"when":    formatTime,
	"rel":     relative,
	"shortSubject": func(s string) string {
		// urn:pleo:company:8d1c3f52-... reads as "company 8d1c3f52…"; the
		// whole URN is in the cell's title and on the connection's page.
		parts := strings.Split(s, ":")
		if len(parts) == 4 && parts[0] == "urn" && len(parts[3]) > 8 {
			return parts[2] + " " + parts[3][:8] + "…"
		}
		return s
	},
	"stateLabel": func(s string) string {
		switch s {
		case "reconnect_required":
			return "reconnect required"
		}
		return s
	},
}

// pageTemplate parses files (under assets/templates) into one template
// whose entry point is name. It panics on a parse error: the templates are
// compiled in, so that is a bug a test meets first.
func pageTemplate(name string, files ...string) *template.Template {
	t := template.New(name).Funcs(funcs)
	for _, f := range files {
		t = template.Must(t.Parse(mustRead("assets/templates/" + f)))
	}
	return t
}

// formatTime prints t for a table: UTC, to the second; "—" for zero.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// relative says how far t is from now ("in 4m 10s", "3h 2m ago"); "—" for
// the zero time. The countdown script keeps the same format.
func relative(t, now time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := t.Sub(now).Round(time.Second)
	if d == 0 {
		return "just now"
	}
	past := d < 0
	if past {
		d = -d
	}
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	var out string
	switch {
	case h >= 48:
		out = fmt.Sprintf("%dd", h/24)
	case h > 0:
		out = fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		out = fmt.Sprintf("%dm %ds", m, s)
	default:
		out = fmt.Sprintf("%ds", s)
	}
	if past {
		return out + " ago"
	}
	return "in " + out
}
