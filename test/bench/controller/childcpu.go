package main

import (
	"os"
	"strconv"
	"strings"
)

// childrenCPU is the CPU time (user+system, seconds) of this process's running children by
// command name: the control plane envtest started, kube-apiserver and etcd. It reads
// /proc (Linux); elsewhere it is empty and the figures derived from it are left out.
func childrenCPU() map[string]float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := strconv.Itoa(os.Getpid())
	ticks := 100.0 // USER_HZ: 100 on every Linux architecture Go supports
	out := map[string]float64{}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // (exited meanwhile)
		}
		name, fields, ok := parseStat(string(b))
		// fields from the state on: state ppid ... utime (11) stime (12)
		if !ok || len(fields) < 13 || fields[1] != self {
			continue
		}
		utime, err1 := strconv.ParseFloat(fields[11], 64)
		stime, err2 := strconv.ParseFloat(fields[12], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out[name] += (utime + stime) / ticks
	}
	return out
}

// parseStat splits /proc/<pid>/stat into the command name (in parentheses, which may hold
// spaces) and the fields after it.
func parseStat(s string) (string, []string, bool) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 > len(s) {
		return "", nil, false
	}
	return s[open+1 : end], strings.Fields(s[end+2:]), true
}

// cpuSince is how much CPU time each child used since before.
func cpuSince(before, after map[string]float64) map[string]float64 {
	if len(after) == 0 {
		return nil
	}
	out := make(map[string]float64, len(after))
	for name, v := range after {
		out[name] = v - before[name]
	}
	return out
}
