//go:build linux

package bpftest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const helperEnv = "BPFTEST_HELPER"

// oneCPUEnv asks a helper to bind itself to one CPU: the binding that it
// inherits does not survive a clone into a cgroup whose cpuset controller is
// enabled (a pure cgroup v2 node's pods), which resets the affinity to the
// cpuset's CPUs.
const oneCPUEnv = "BPFTEST_ONE_CPU"

// helperTimeout bounds every helper process and each of its connections;
// generous, so that a loaded machine slows tests down rather than fails them.
const helperTimeout = 5 * time.Minute

// HelperFunc is the body of a helper process; args are its arguments. A
// helper reports readiness by printing "ready" as its first line, if its
// starter waits for it.
type HelperFunc func(args []string) error

var helpers = map[string]HelperFunc{
	"tcp-server": tcpServer,
	"tcp-client": tcpClient,
}

// RunHelperIfRequested runs the helper named by $BPFTEST_HELPER, if it is
// set, and exits. Call it first in TestMain: helper processes are the test
// binary itself. extra adds helpers of the caller's own.
func RunHelperIfRequested(extra map[string]HelperFunc) {
	name := os.Getenv(helperEnv)
	if name == "" {
		return
	}
	fn := extra[name]
	if fn == nil {
		fn = helpers[name]
	}
	if fn == nil {
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
		os.Exit(2)
	}
	if os.Getenv(oneCPUEnv) != "" {
		if err := bindToOneCPU(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
	}
	if err := fn(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// HelperCommand returns a command that runs the helper name with args in
// the test's own namespaces and cgroup.
func HelperCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, testBinary(), args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	return cmd
}

func testBinary() string {
	if exe, err := os.Executable(); err == nil {
		return exe
	}
	return os.Args[0]
}

// Proc is a running helper process.
type Proc struct {
	name   string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stderr bytes.Buffer
	lines  chan string // stdout, closed at EOF
	once   sync.Once
	out    string
	err    error
}

// StartHelper starts the helper name with args in s. If ready, it waits
// until the helper prints "ready". The helper runs bound to one CPU, so
// that veth does not reorder its packets. Cleanup kills it if it still runs.
func (s *Sandbox) StartHelper(t testing.TB, ready bool, name string, args ...string) *Proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	p := &Proc{name: name, cancel: cancel, lines: make(chan string, 64)}
	p.cmd = s.Command(ctx, testBinary(), args...)
	p.cmd.Env = append(os.Environ(), helperEnv+"="+name, oneCPUEnv+"=1")
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := startOnOneCPU(p.cmd); err != nil {
		cancel()
		t.Fatalf("start helper %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		p.cancel()
		p.wait()
	})
	if ready {
		select {
		case l, ok := <-p.lines:
			if ok && l == "ready" {
				break
			}
			p.wait()
			t.Fatalf("helper %s not ready (%q): %v: %s", name, l, p.err, p.stderr.String())
		case <-time.After(helperTimeout):
			t.Fatalf("helper %s not ready after %v", name, helperTimeout)
		}
	}
	return p
}

// startOnOneCPU starts cmd bound to one CPU, which it inherits from the
// thread that clones it. veth hands a packet to the receiver's backlog on
// the CPU that sent it, so segments sent from two CPUs can overtake each
// other, and TCP answers the reordering with spurious retransmits.
func startOnOneCPU(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	var all, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	for cpu := 0; cpu < len(all)*64; cpu++ {
		if all.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	err := cmd.Start()
	// A thread left bound to one CPU ends with its goroutine.
	if unix.SchedSetaffinity(0, &all) == nil {
		runtime.UnlockOSThread()
	}
	return err
}

// bindToOneCPU binds every thread of the process to the first CPU it may
// run on. Affinity is per thread and a new thread inherits its creator's, so
// it goes over the threads until a pass finds none left to bind.
func bindToOneCPU() error {
	var all, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return err
	}
	for cpu := 0; cpu < len(all)*64; cpu++ {
		if all.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	bound := make(map[int]bool)
	for {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		n := len(bound)
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil || bound[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &one); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("bind thread %d: %w", tid, err)
			}
			bound[tid] = true
		}
		if len(bound) == n {
			return nil
		}
	}
}

// Pid returns the helper's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

func (p *Proc) wait() {
	p.once.Do(func() {
		var out []string
		for l := range p.lines {
			out = append(out, l)
		}
		p.out = strings.Join(out, "\n")
		p.err = p.cmd.Wait()
		p.cancel()
	})
}

// Wait waits for the helper to exit and returns its output after the ready
// line. A helper that fails fails t.
func (p *Proc) Wait(t testing.TB) string {
	t.Helper()
	p.wait()
	if p.err != nil {
		t.Fatalf("helper %s: %v: %s", p.name, p.err, p.stderr.String())
	}
	return p.out
}

// ServerOptions configure StartTCPServer.
type ServerOptions struct {
	// Port is the port to listen on, on every address.
	Port uint16
	// Conns is the number of connections to accept before exiting.
	Conns int
	// Recv is the number of bytes read from each connection before the
	// reply.
	Recv int
	// Send is the number of bytes of the reply.
	Send int
	// MPTCP makes the listener Multipath TCP, which Go listeners are by
	// default. It is off unless set.
	MPTCP bool
}

// StartTCPServer starts a TCP server in s and returns once it listens. On
// each connection the server reads exactly Recv bytes, writes Send bytes,
// then reads until the peer closes or resets. After Conns connections it
// exits, and Wait returns "eof <n> reset <m>": how the connections ended.
func (s *Sandbox) StartTCPServer(t testing.TB, o ServerOptions) *Proc {
	t.Helper()
	return s.StartHelper(t, true, "tcp-server", "-port", strconv.Itoa(int(o.Port)),
		"-conns", strconv.Itoa(o.Conns), "-recv", strconv.Itoa(o.Recv),
		"-send", strconv.Itoa(o.Send), "-mptcp="+strconv.FormatBool(o.MPTCP))
}

// ClientOptions configure RunTCPClient.
type ClientOptions struct {
	// Addr is the server's address.
	Addr netip.AddrPort
	// Conns is the number of connections, made one after the other.
	Conns int
	// Send is the number of bytes written on each connection.
	Send int
	// Recv is the number of bytes then read on each connection.
	Recv int
	// Reset closes each connection with SO_LINGER 0, which sends a reset.
	Reset bool
	// Refused expects every connect to be refused.
	Refused bool
	// MPTCP makes the connections Multipath TCP. It is off unless set, as
	// for Go dialers.
	MPTCP bool
}

// RunTCPClient runs a TCP client in s until it is done. Each connection
// writes Send bytes, reads exactly Recv bytes and closes. Any other outcome
// fails t.
func (s *Sandbox) RunTCPClient(t testing.TB, o ClientOptions) {
	t.Helper()
	s.StartHelper(t, false, "tcp-client", "-addr", o.Addr.String(),
		"-conns", strconv.Itoa(o.Conns), "-send", strconv.Itoa(o.Send), "-recv", strconv.Itoa(o.Recv),
		"-reset="+strconv.FormatBool(o.Reset), "-refused="+strconv.FormatBool(o.Refused),
		"-mptcp="+strconv.FormatBool(o.MPTCP)).Wait(t)
}

func tcpServer(args []string) error {
	fs := flag.NewFlagSet("tcp-server", flag.ContinueOnError)
	port := fs.Int("port", 0, "port")
	conns := fs.Int("conns", 1, "connections")
	recv := fs.Int("recv", 0, "bytes to read")
	send := fs.Int("send", 0, "bytes to write")
	mptcp := fs.Bool("mptcp", false, "multipath tcp")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(*mptcp)
	ln, err := lc.Listen(context.Background(), "tcp4", fmt.Sprintf(":%d", *port))
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println("ready")
	var eof, reset atomic.Int64
	errs := make(chan error, *conns)
	var wg sync.WaitGroup
	for range *conns {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		wg.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(helperTimeout))
			buf := make([]byte, max(*recv, 1))
			if _, err := io.ReadFull(c, buf[:*recv]); err != nil {
				errs <- fmt.Errorf("read request: %w", err)
				return
			}
			if _, err := c.Write(payload(*send)); *send > 0 && err != nil {
				errs <- fmt.Errorf("write reply: %w", err)
				return
			}
			n, err := c.Read(buf[:1])
			switch {
			case n == 0 && err == io.EOF:
				eof.Add(1)
			case n == 0 && errors.Is(err, syscall.ECONNRESET):
				reset.Add(1)
			default:
				errs <- fmt.Errorf("after reply: read %d bytes: %v", n, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		return err
	}
	fmt.Printf("eof %d reset %d\n", eof.Load(), reset.Load())
	return nil
}

func tcpClient(args []string) error {
	fs := flag.NewFlagSet("tcp-client", flag.ContinueOnError)
	addr := fs.String("addr", "", "server address")
	conns := fs.Int("conns", 1, "connections")
	send := fs.Int("send", 0, "bytes to write")
	recv := fs.Int("recv", 0, "bytes to read")
	reset := fs.Bool("reset", false, "close with a reset")
	refused := fs.Bool("refused", false, "expect refused connects")
	mptcp := fs.Bool("mptcp", false, "multipath tcp")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d := net.Dialer{Timeout: helperTimeout}
	d.SetMultipathTCP(*mptcp)
	buf := make([]byte, *recv)
	for i := range *conns {
		c, err := d.Dial("tcp4", *addr)
		if *refused {
			if err == nil {
				c.Close()
				return fmt.Errorf("connection %d: connected, want refused", i)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("connection %d: %w, want refused", i, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		c.SetDeadline(time.Now().Add(helperTimeout))
		if _, err := c.Write(payload(*send)); err != nil {
			return fmt.Errorf("connection %d: write: %w", i, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("connection %d: read: %w", i, err)
		}
		if *reset {
			if err := c.(*net.TCPConn).SetLinger(0); err != nil {
				return err
			}
		}
		if err := c.Close(); err != nil {
			return fmt.Errorf("connection %d: close: %w", i, err)
		}
	}
	return nil
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func collect(errs <-chan error) []error {
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return all
}
