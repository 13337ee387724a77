package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/fatih/color"
	"github.com/mattn/go-isatty"
	"github.com/spf13/pflag"
)

// colorMode is the value of --color: auto (the default), always or never.
type colorMode string

const (
	colorAuto   colorMode = "auto"
	colorAlways colorMode = "always"
	colorNever  colorMode = "never"
)

var _ pflag.Value = (*colorMode)(nil)

// Set accepts auto, always or never; anything else is bad usage (exit 2).
func (m *colorMode) Set(s string) error {
	switch colorMode(s) {
	case colorAuto, colorAlways, colorNever:
		*m = colorMode(s)
		return nil
	}
	return fmt.Errorf("%q is not a colour mode: use auto, always or never", s)
}

// String returns the mode; the zero value reads as auto.
func (m *colorMode) String() string {
	if *m == "" {
		return string(colorAuto)
	}
	return string(*m)
}

// Type names the value in help.
func (m *colorMode) Type() string { return "when" }

// colorHelp is the help of the global --color flag.
const colorHelp = "colour row diffs, keys and refusals: auto (only when the output is a terminal and NO_COLOR is unset), always, or never"

// wantColor says whether output written to w is coloured: never under
// --json; with --color=always or never as asked; with auto (the default)
// only when w is a terminal, NO_COLOR is unset or empty (no-color.org) and
// TERM is not "dumb".
func (g *globals) wantColor(w io.Writer) bool {
	if g.json {
		return false
	}
	switch g.color {
	case colorAlways:
		return true
	case colorNever:
		return false
	}
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	f, ok := fileOf(w)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// palette colours the parts of human output that a reader scans for: values
// a change removed (red), values it added (green), row keys (bold), and
// refusals and conflicts (bold red; a conflict left alone in yellow). A
// palette that is off returns every string unchanged.
type palette struct {
	removed, added, key, refusal, warning *color.Color
}

// palette returns the palette for output written to w (see wantColor).
func (g *globals) palette(w io.Writer) palette {
	return newPalette(g.wantColor(w))
}

func newPalette(on bool) palette {
	p := palette{
		removed: color.New(color.FgRed),
		added:   color.New(color.FgGreen),
		key:     color.New(color.Bold),
		refusal: color.New(color.FgRed, color.Bold),
		warning: color.New(color.FgYellow),
	}
	// Each colour is switched on or off by itself, so fatih/color's global
	// NoColor (decided on os.Stdout at start-up) plays no part: the decision
	// is wantColor's, for the writer the output goes to.
	for _, c := range []*color.Color{p.removed, p.added, p.key, p.refusal, p.warning} {
		if on {
			c.EnableColor()
		} else {
			c.DisableColor()
		}
	}
	return p
}

// Removed colours a value a change took away.
func (p palette) Removed(s string) string { return p.removed.Sprint(s) }

// Added colours a value a change put in.
func (p palette) Added(s string) string { return p.added.Sprint(s) }

// Key marks a row's key.
func (p palette) Key(s string) string { return p.key.Sprint(s) }

// Refusal marks a refusal or a conflict that refuses.
func (p palette) Refusal(s string) string { return p.refusal.Sprint(s) }

// Warning marks a conflict left alone or another warning.
func (p palette) Warning(s string) string { return p.warning.Sprint(s) }

// errorText is err as Run prints it on stderr: a refusal (exit 3) in bold
// red when stderr gets colour, anything else as it is.
func (g *globals) errorText(code int, msg string) string {
	if code == ExitRefused {
		return g.palette(g.stderr).Refusal(msg)
	}
	return msg
}
