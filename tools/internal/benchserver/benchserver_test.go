package benchserver

import (
	"os"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	status := []byte("Name:\tcoffer-server\nVmPeak:\t  900000 kB\nVmRSS:\t   81234 kB\nThreads:\t9\n")
	got, err := parseVmRSS(status)
	if err != nil || got != 81234<<10 {
		t.Errorf("parseVmRSS = %d, %v; want %d", got, err, 81234<<10)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("parseVmRSS accepted a status without VmRSS")
	}
}

func TestRSSOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	n, err := RSS(os.Getpid())
	if err != nil || n <= 0 {
		t.Errorf("RSS(self) = %d, %v", n, err)
	}
}
