package app

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Build identifies a binary: set at link time (-ldflags "-X main.version=…"), else read from
// the Go build information (the module version and the VCS revision, when built in a checkout).
type Build struct {
	Version, Commit, Date string
}

// PrintVersion is "coffer-server version".
func PrintVersion(w io.Writer, b Build) {
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && b.Commit == "":
				b.Commit = s.Value
			case s.Key == "vcs.time" && b.Date == "":
				b.Date = s.Value
			}
		}
	}
	fmt.Fprintf(w, "coffer-server %s\ncommit: %s\nbuilt: %s\ngo: %s %s/%s\n", orUnknown(b.Version), orUnknown(b.Commit),
		orUnknown(b.Date), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
