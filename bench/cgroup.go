package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuGroup counts the CPU time of some processes and of every process
// they start, those that exited included, in a control group of its own.
// /proc's totals cannot: a process counts its children's time only when it
// waits for them, and mod_cgid's daemon ignores SIGCHLD, so the kernel
// reaps each CGI program it starts and adds the program's time to no one.
// It needs root and a cgroup hierarchy that counts CPU: cgroup v1's
// cpuacct (cpuacct.usage) or cgroup v2 (cpu.stat's usage_usec).
type cpuGroup struct {
	dir  string // the group's directory
	root string // the hierarchy's root: where its processes go back
	v2   bool
}

// newCPUGroup makes a group named name.
func newCPUGroup(name string) (*cpuGroup, error) {
	root, v2, err := cpuHierarchy()
	if err != nil {
		return nil, err
	}
	g := &cpuGroup{dir: filepath.Join(root, name), root: root, v2: v2}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	if _, err := g.usage(); err != nil {
		os.Remove(g.dir)
		return nil, err
	}
	return g, nil
}

// cpuHierarchy finds a mounted cgroup hierarchy that counts CPU time: v1
// with the cpuacct controller, else v2.
func cpuHierarchy() (root string, v2 bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, rest := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(rest) < 3 {
			continue
		}
		switch {
		case rest[0] == "cgroup" && strings.Contains(","+rest[2]+",", ",cpuacct,"):
			return fields[4], false, nil
		case rest[0] == "cgroup2" && root == "":
			root, v2 = fields[4], true
		}
	}
	if root == "" {
		return "", false, errors.New("cgroup: no hierarchy counts CPU time here")
	}
	return root, v2, nil
}

// add moves the processes pids into the group; the processes they start
// from then on are in it too.
func (g *cpuGroup) add(pids []int) error {
	for _, pid := range pids {
		err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		// A process that ended meanwhile (ESRCH) has nothing more to count.
		if err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("cgroup: moving process %d: %w", pid, err)
		}
	}
	return nil
}

// usage returns the CPU time the group's processes have used since it
// was made, those that exited included.
func (g *cpuGroup) usage() (time.Duration, error) {
	if !g.v2 {
		b, err := os.ReadFile(filepath.Join(g.dir, "cpuacct.usage"))
		if err != nil {
			return 0, fmt.Errorf("cgroup: %w", err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cgroup: cpuacct.usage: %w", err)
		}
		return time.Duration(ns), nil
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cgroup: cpu.stat: %w", err)
			}
			return time.Duration(us) * time.Microsecond, nil
		}
	}
	return 0, errors.New("cgroup: cpu.stat has no usage_usec")
}

// remove moves what still runs in the group back to the hierarchy's root
// and removes the group.
func (g *cpuGroup) remove() error {
	for range 10 {
		b, _ := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			os.WriteFile(filepath.Join(g.root, "cgroup.procs"), []byte(f), 0)
		}
		if err := os.Remove(g.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cgroup: %s could not be removed", g.dir)
}
