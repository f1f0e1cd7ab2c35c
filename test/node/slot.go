package node

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// A slot is what one node owns on this machine, so that nodes of tests running at the same time
// (go test runs packages in parallel) never share a bridge, a pod subnet, a port, a cgroup or an
// iptables chain. It is held by an flock, which the kernel drops when the test process dies,
// however it dies; the next holder first removes whatever a dead one left.
type slot struct {
	index int
	lock  *os.File
}

const (
	slotLockDir = "/run/argocd-agent-addon-test-nodes"
	maxSlots    = 64
)

func acquireSlot() (*slot, error) {
	if err := os.MkdirAll(slotLockDir, 0o755); err != nil {
		return nil, err
	}
	for i := 0; i < maxSlots; i++ {
		f, err := os.OpenFile(filepath.Join(slotLockDir, fmt.Sprintf("slot-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			continue
		}
		return &slot{index: i, lock: f}, nil
	}
	return nil, fmt.Errorf("all %d node slots on this machine are in use", maxSlots)
}

func (s *slot) release() { _ = s.lock.Close() }

// claim notes dir in the lock file: if this process dies without cleaning up, the next holder
// of the slot reads it (previousDir) and removes the shims, mounts and files left there.
func (s *slot) claim(dir string) error {
	if err := s.lock.Truncate(0); err != nil {
		return err
	}
	_, err := s.lock.WriteAt([]byte(dir), 0)
	return err
}

// previousDir is the directory the last holder claimed, if any.
func (s *slot) previousDir() string {
	data, err := os.ReadFile(s.lock.Name())
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// Names and numbers of the slot. Pod subnets are 10.244.<index>.0/24; the bridge name fits
// Linux's 15 characters.
func (s *slot) podCIDR() string    { return fmt.Sprintf("10.244.%d.0/24", s.index) }
func (s *slot) gateway() string    { return fmt.Sprintf("10.244.%d.1", s.index) }
func (s *slot) bridge() string     { return fmt.Sprintf("aao-br%d", s.index) }
func (s *slot) natChain() string   { return fmt.Sprintf("AAO-SVC-%d", s.index) }
func (s *slot) network() string    { return fmt.Sprintf("aao-node%d", s.index) }
func (s *slot) cgroupRoot() string { return fmt.Sprintf("/aao-node%d", s.index) }

// Below the range test/proc.FreePorts hands out (20000-32767), so no other test process takes it.
func (s *slot) kubeletPort() int { return 11250 + s.index }

// cleanUp removes what a node of this slot may have left: processes in its cgroups, mounts
// under dir, its bridge, its iptables chain and its cgroups. Each step goes on when one fails,
// so a half-started node is cleaned as well as a full one.
func (s *slot) cleanUp(dir string) error {
	var errs []error
	errs = append(errs, s.killCgroupProcesses())
	if dir != "" {
		killShims(dir)
		errs = append(errs, unmountUnder(dir))
	}
	errs = append(errs, s.removeCNIRules())
	if _, err := os.Stat("/sys/class/net/" + s.bridge()); err == nil {
		errs = append(errs, run("ip", "link", "delete", s.bridge()))
	}
	errs = append(errs, s.removeNAT(), s.removeLB())
	errs = append(errs, s.removeCgroups())
	return errors.Join(errs...)
}

// makeBridge creates the node's bridge with the gateway address, up.
func (s *slot) makeBridge() error {
	if err := run("ip", "link", "add", "name", s.bridge(), "type", "bridge"); err != nil {
		return err
	}
	if err := run("ip", "addr", "add", s.gateway()+"/24", "dev", s.bridge()); err != nil {
		return err
	}
	return run("ip", "link", "set", s.bridge(), "up")
}

// cgroupHierarchies are the cgroup v1 hierarchies mounted under /sys/fs/cgroup, plus, with
// unified, the v2 hierarchy of a hybrid host, where runc also creates the pods' cgroups (the
// kubelet's --cgroup-root need not exist there, but its children must be removed). The nodes
// support cgroup v1 hosts only, as ../shared/reference/real-pods.md verified.
func cgroupHierarchies(unified bool) ([]string, error) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return nil, errors.New("this host has only cgroup v2: the test nodes support cgroup v1 (or hybrid) hosts")
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && (unified || e.Name() != "unified") {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return dirs, nil
}

// makeCgroups creates the slot's cgroup root in every hierarchy: the kubelet requires its
// --cgroup-root to exist, and a root of its own keeps it from reaping another node's pods as
// orphans. A cpuset cgroup starts with no CPUs or memory nodes, so they are copied in.
func (s *slot) makeCgroups() error {
	dirs, err := cgroupHierarchies(false)
	if err != nil {
		return err
	}
	for _, h := range dirs {
		dir := h + s.cgroupRoot()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// killCgroupProcesses kills what still runs in the slot's cgroups: containerd's shims and the
// containers outlive containerd.
func (s *slot) killCgroupProcesses() error {
	dirs, err := cgroupHierarchies(true)
	if err != nil {
		return err
	}
	for _, h := range dirs {
		_ = filepath.WalkDir(h+s.cgroupRoot(), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
	return nil
}

// killShims kills containerd's shims of the containerd under dir. They run in containerd's
// cgroup, not the node's, and outlive it; the kubelet would have stopped them had it drained.
func killShims(dir string) {
	socket := filepath.Join(dir, "containerd", "containerd.sock") // startContainerd's
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscan(p.Name(), &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		if i := slices.Index(args, "-address"); i >= 0 && i+1 < len(args) && args[i+1] == socket {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeCNIRules removes the bridge plugin's masquerading rules of pods whose sandbox was never
// torn down (CNI DEL runs only when the kubelet stops a pod): each rule carries the network's
// name in a comment and jumps to a chain of its own.
func (s *slot) removeCNIRules() error {
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		return fmt.Errorf("iptables-save: %w", err)
	}
	marker := fmt.Sprintf(`name: \"%s\"`, s.network())
	var errs []error
	chains := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, marker) {
			continue
		}
		fields := strings.Fields(line)
		if i := slices.Index(fields, "-j"); i >= 0 && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "CNI-") && !strings.HasPrefix(fields[i+1], "CNI-HOSTPORT-") {
			chains[fields[i+1]] = true
		}
		// iptables-save quotes the comment; the shell would unquote it. Delete by the rule's
		// position-independent spec through iptables-restore instead.
		errs = append(errs, restoreNAT("-D"+line[2:]))
	}
	for chain := range chains {
		errs = append(errs, restoreNAT("-F "+chain), restoreNAT("-X "+chain))
	}
	return errors.Join(errs...)
}

// restoreNAT applies one iptables-restore line to the nat table without flushing it.
func restoreNAT(line string) error {
	cmd := exec.Command("iptables-restore", "--noflush", "-w")
	cmd.Stdin = strings.NewReader("*nat\n" + line + "\nCOMMIT\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore %q: %w: %s", line, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeCgroups removes the slot's cgroups, deepest first (a cgroup with children cannot go).
func (s *slot) removeCgroups() error {
	dirs, err := cgroupHierarchies(true)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range dirs {
		var all []string
		_ = filepath.WalkDir(h+s.cgroupRoot(), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(all)))
		for _, d := range all {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// unmountUnder unmounts every mount point under dir (container root filesystems, sandbox
// network namespaces, secret and token volumes), deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			if p := unescapeMountPath(fields[4]); p == dir || strings.HasPrefix(p, dir+"/") {
				points = append(points, p)
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(p string) string {
	if !strings.Contains(p, `\`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+3 < len(p) {
			var c int
			if _, err := fmt.Sscanf(p[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// addNAT routes the node's pods to a ClusterIP: there is no kube-proxy here, so the slot's nat
// chain DNATs each routed Service (only pods of this node's subnet pass through it).
func (s *slot) addNAT(clusterIP string, port int, to string) error {
	chain := s.natChain()
	if err := run("iptables", "-w", "-t", "nat", "-N", chain); err != nil && !strings.Contains(err.Error(), "exists") {
		return err
	}
	jump := []string{"-s", s.podCIDR(), "-j", chain}
	if run("iptables", append([]string{"-w", "-t", "nat", "-C", "PREROUTING"}, jump...)...) != nil {
		if err := run("iptables", append([]string{"-w", "-t", "nat", "-I", "PREROUTING", "1"}, jump...)...); err != nil {
			return err
		}
	}
	return run("iptables", "-w", "-t", "nat", "-A", chain, "-d", clusterIP+"/32", "-p", "tcp", "--dport", fmt.Sprint(port),
		"-j", "DNAT", "--to-destination", to)
}

func (s *slot) removeNAT() error {
	chain := s.natChain()
	if run("iptables", "-w", "-t", "nat", "-L", chain, "-n") != nil {
		return nil // no chain: nothing to remove
	}
	for run("iptables", "-w", "-t", "nat", "-D", "PREROUTING", "-s", s.podCIDR(), "-j", chain) == nil {
	}
	if err := run("iptables", "-w", "-t", "nat", "-F", chain); err != nil {
		return err
	}
	return run("iptables", "-w", "-t", "nat", "-X", chain)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
