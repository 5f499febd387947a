// containerd's snapshotter conformance suite (snapshots/testsuite) run against
// `devmapper serve containerd` through containerd's own proxy client, the way containerd
// itself talks to a proxy plugin. Built offline in GOPATH mode from Debian's
// golang-github-containerd-containerd-dev; test/kernel/containerd-suite.test.ts builds it
// on the host and runs it in the test kernel (it needs device-mapper and root).
//
// Environment: DEVMAPPER_SUITE_CLI (the built CLI, dist/src/cli/bin.js) and
// DEVMAPPER_SUITE_NODE (the node binary; default "node" from PATH).
package containersuite

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/testutil"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"github.com/containerd/continuity/fs/fstest"
	"google.golang.org/grpc"
)

const snapshotterName = "dmthin"

func cliPaths(t *testing.T) (node, cli string) {
	cli = os.Getenv("DEVMAPPER_SUITE_CLI")
	if cli == "" {
		t.Fatal("DEVMAPPER_SUITE_CLI must name the built CLI (dist/src/cli/bin.js)")
	}
	node = os.Getenv("DEVMAPPER_SUITE_NODE")
	if node == "" {
		node = "node"
	}
	return node, cli
}

func TestSnapshotter(t *testing.T) {
	testutil.RequiresRoot(t)
	node, cli := cliPaths(t)
	testsuite.SnapshotterSuite(t, snapshotterName, func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return startSnapshotter(node, cli, root)
	})
}

// TestRenameAcrossLayers stands in for the suite's Rename case, which containerd 1.6 skips
// unconditionally (an overlayfs problem): renames in an upper layer of what a lower layer holds —
// a directory, a file replaced by a rename over it, a file moved to a new name and to another
// directory — must show in a view of the upper layer, and the lower layer must be unchanged.
func TestRenameAcrossLayers(t *testing.T) {
	testutil.RequiresRoot(t)
	node, cli := cliPaths(t)
	dir, err := os.MkdirTemp("", "snapshot-suite-"+snapshotterName+"-rename-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	work := filepath.Join(dir, "work")
	for _, d := range []string{root, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sn, cleanup, err := startSnapshotter(node, cli, root)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}()
	ctx := namespaces.WithNamespace(context.Background(), "rename")
	lower := fstest.Apply(
		fstest.CreateDir("/olddir", 0o750),
		fstest.CreateFile("/olddir/inside", []byte("moves with its directory\n"), 0o640),
		fstest.CreateDir("/files", 0o755),
		fstest.CreateFile("/files/target", []byte("replaced by a rename\n"), 0o644),
		fstest.CreateFile("/files/renamed", []byte("gets a new name\n"), 0o600),
		fstest.CreateFile("/files/elsewhere", []byte("changes directory\n"), 0o644),
	)
	upper := fstest.Apply(
		fstest.Rename("/olddir", "/newdir"),
		fstest.CreateFile("/files/replacement", []byte("the new target\n"), 0o644),
		fstest.Rename("/files/replacement", "/files/target"),
		fstest.Rename("/files/renamed", "/files/new-name"),
		fstest.Rename("/files/elsewhere", "/newdir/elsewhere"),
	)
	layer := func(key, parent, name string, a fstest.Applier) {
		target := filepath.Join(work, key)
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		mounts, err := sn.Prepare(ctx, key, parent)
		if err != nil {
			t.Fatalf("prepare %s: %v", key, err)
		}
		if err := mount.All(mounts, target); err != nil {
			t.Fatalf("mount %s: %v", key, err)
		}
		applyErr := a.Apply(target)
		testutil.Unmount(t, target)
		if applyErr != nil {
			t.Fatalf("apply to %s: %v", key, applyErr)
		}
		if err := sn.Commit(ctx, name, key); err != nil {
			t.Fatalf("commit %s: %v", key, err)
		}
	}
	check := func(key, parent string, want fstest.Applier) {
		target := filepath.Join(work, key)
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		mounts, err := sn.View(ctx, key, parent)
		if err != nil {
			t.Fatalf("view %s: %v", key, err)
		}
		if err := mount.All(mounts, target); err != nil {
			t.Fatalf("mount %s: %v", key, err)
		}
		defer testutil.Unmount(t, target)
		if err := fstest.CheckDirectoryEqualWithApplier(target, want); err != nil {
			t.Errorf("view of %s: %v", parent, err)
		}
	}
	layer("lower-active", "", "lower", lower)
	layer("upper-active", "lower", "upper", upper)
	check("upper-view", "upper", fstest.Apply(lower, upper))
	check("lower-view", "lower", lower)
}

// lockedBuffer collects the server's output while the case runs (the pipe must keep draining).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

func runCli(node, cli string, args ...string) (string, error) {
	cmd := exec.Command(node, append([]string{cli}, args...)...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("devmapper %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// cleanEnv drops what would point the CLI at another home or change its logging.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DEVMAPPER_HOME=") || strings.HasPrefix(kv, "DEVMAPPER_LOG=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// startSnapshotter makes a fresh home, serves it, and dials it. Every case gets its own pool,
// so no case sees another's snapshots. The home lives outside the case's directory: on a failed
// case the suite dumps that directory, reading every file whole, and the pool's 2G sparse data
// file would exhaust the test kernel's memory and take every other case's result with it.
func startSnapshotter(node, cli, root string) (snapshots.Snapshotter, func() error, error) {
	homeParent, err := os.MkdirTemp("", "dmthin-home-")
	if err != nil {
		return nil, nil, err
	}
	home := filepath.Join(homeParent, "home")
	socket := filepath.Join(root, "dmthin.sock")
	// 128LayersMount stacks 128 snapshots of a small filesystem: a 64M base device and a 2G
	// sparse data file leave ample room.
	if _, err := runCli(node, cli, "--home", home, "init", "--base-size", "64M", "--loop-data-size", "2G", "--loop-metadata-size", "64M"); err != nil {
		_ = os.RemoveAll(homeParent)
		return nil, nil, err
	}
	output := &lockedBuffer{}
	server := exec.Command(node, cli, "--home", home, "serve", "containerd", "--socket", socket)
	server.Env = cleanEnv()
	// if this binary dies (a panic skips every teardown), the server is told to stop too
	server.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	server.Stdout = output
	stderr, err := server.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := server.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(stderr)
		signalled := false
		for scanner.Scan() {
			line := scanner.Text()
			output.Write([]byte(line + "\n"))
			// the CLI's own line, printed once serving has begun
			if !signalled && strings.Contains(line, "devmapper: containerd snapshotter for") && strings.Contains(line, "listening on") {
				signalled = true
				close(ready)
			}
		}
		exited <- server.Wait()
	}()
	destroy := func() error { return teardown(node, cli, root, home, server, exited, output) }
	select {
	case <-ready:
	case err := <-exited:
		exited <- err
		_ = destroy()
		return nil, nil, fmt.Errorf("devmapper serve exited before listening (%v): %s", err, output.tail(4000))
	case <-time.After(60 * time.Second):
		_ = destroy()
		return nil, nil, fmt.Errorf("devmapper serve did not listen within 60 s: %s", output.tail(4000))
	}
	conn, err := grpc.Dial("unix://"+socket, grpc.WithInsecure())
	if err != nil {
		_ = destroy()
		return nil, nil, err
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), snapshotterName)
	cleanup := func() error {
		conn.Close()
		return destroy()
	}
	return sn, cleanup, nil
}

// teardown stops the server and removes the home completely: whatever a failed case left
// mounted under its directory is unmounted first, then `devmapper cleanup` removes the pool and
// every layer device (the loop devices go with the pool), then the files go. It checks that no
// dm device, loop device or mount of this home is left.
func teardown(node, cli, root, home string, server *exec.Cmd, exited chan error, output *lockedBuffer) error {
	var problems []string
	caseDir := filepath.Dir(root)
	// the suite's work area only: what the server mounted itself is the server's to release
	for _, point := range mountsUnder(filepath.Join(caseDir, "work")) {
		if err := syscall.Unmount(point, 0); err != nil {
			_ = syscall.Unmount(point, syscall.MNT_DETACH)
		}
	}
	_ = server.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			problems = append(problems, fmt.Sprintf("the server did not exit cleanly on SIGTERM (%v): %s", err, output.tail(4000)))
		}
	case <-time.After(30 * time.Second):
		_ = server.Process.Kill()
		<-exited
		problems = append(problems, fmt.Sprintf("the server did not exit within 30 s of SIGTERM: %s", output.tail(4000)))
	}
	var homeInode uint64
	if st, err := os.Stat(home); err == nil {
		homeInode = st.Sys().(*syscall.Stat_t).Ino
		if _, err := runCli(node, cli, "--home", home, "cleanup"); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if left := append(mountsUnder(caseDir), mountsUnder(home)...); len(left) > 0 {
		problems = append(problems, fmt.Sprintf("still mounted: %v", left))
	}
	if homeInode != 0 {
		if names, err := dmNamesOfHome(node, cli, homeInode); err != nil {
			problems = append(problems, err.Error())
		} else if len(names) > 0 {
			problems = append(problems, fmt.Sprintf("dm devices left: %v", names))
		}
	}
	if loops := loopsBackedUnder(home); len(loops) > 0 {
		problems = append(problems, fmt.Sprintf("loop devices left: %v", loops))
	}
	if err := os.RemoveAll(filepath.Dir(home)); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		point := unescapeMount(fields[4])
		if point == dir || strings.HasPrefix(point, dir+"/") {
			points = append(points, point)
		}
	}
	for i, j := 0, len(points)-1; i < j; i, j = i+1, j-1 {
		points[i], points[j] = points[j], points[i]
	}
	return points
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// dmNamesOfHome: the driver names a home's devices devmapper-<maj>:<min>-<home inode>-….
func dmNamesOfHome(node, cli string, inode uint64) ([]string, error) {
	out, err := runCli(node, cli, "dm", "ls")
	if err != nil {
		return nil, err
	}
	var names []string
	marker := fmt.Sprintf("-%d-", inode)
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.HasPrefix(fields[0], "devmapper-") && strings.Contains(fields[0], marker) {
			names = append(names, fields[0])
		}
	}
	return names, nil
}

func loopsBackedUnder(dir string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var loops []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		backing := strings.TrimSpace(string(data))
		if strings.HasPrefix(backing, dir+"/") {
			loops = append(loops, filepath.Base(filepath.Dir(filepath.Dir(f)))+" ("+backing+")")
		}
	}
	return loops
}
