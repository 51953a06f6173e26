package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

const versionUsage = `Usage: tokenkeeper version

Prints tokenkeeper's module version ("(devel)" for a build from a source tree), the Go
version it was built with, and the VCS revision when the build recorded one.
`

// runVersion runs `tokenkeeper version`.
func runVersion(args []string, stdout io.Writer) error {
	f := newFlagSet("tokenkeeper version", "TOKENKEEPER_")
	if err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, versionUsage)
		}
		return err
	}
	version, goVersion := "(devel)", runtime.Version()
	var revision, modified, when string
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			version = v
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			case "vcs.time":
				when = " " + s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "tokenkeeper %s\n", version)
	fmt.Fprintf(stdout, "go          %s\n", goVersion)
	if revision != "" {
		fmt.Fprintf(stdout, "revision    %s%s%s\n", revision, when, modified)
	}
	return nil
}
