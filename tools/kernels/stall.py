#!/usr/bin/env python3
"""Makes a stalled test guest tell where it is, through qemu's monitor.

usage: stall.py MONITOR_SOCKET

exec.sh runs it when a guest outlives its test's own timeout: the test
binary would have panicked with its goroutines by then if the guest kernel
still ran it. It prints each vCPU's instruction pointer three times, a
second apart (one that never moves means the CPU spins there, or qemu
itself is stuck), then sends an NMI. The guest kernel, booted with
unknown_nmi_panic and panic_print=0x40, answers it if it still can with a
panic and every CPU's backtrace on the console, and reboots, which stops
qemu. If qemu still runs ten seconds later, it is told to quit.
"""

import re
import socket
import sys
import time


class Monitor:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.read_prompt()

    def read_prompt(self):
        out = b""
        while not out.endswith(b"(qemu) "):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("qemu closed its monitor")
            out += chunk
        return out.decode(errors="replace")

    def run(self, command):
        self.sock.sendall(command.encode() + b"\n")
        return self.read_prompt()


def main():
    mon = Monitor(sys.argv[1])
    for i in range(3):
        if i:
            time.sleep(1)
        regs = mon.run("info registers -a")
        rips = re.findall(r"RIP=([0-9a-f]+)", regs)
        print("stall.py: vCPU instruction pointers: " + " ".join(rips), file=sys.stderr)
    try:
        mon.run("nmi")
        mon.read_prompt()  # qemu exits when the guest reboots
    except socket.timeout:
        mon.sock.sendall(b"quit\n")
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass


if __name__ == "__main__":
    main()
