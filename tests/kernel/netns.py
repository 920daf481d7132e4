"""Two network namespaces joined by a veth pair, made and removed by a test.

Traffic stays between them: the addresses (192.0.2.1 on ``va`` in the
first, 192.0.2.2 on ``vb`` in the second; TEST-NET-1, RFC 5737) exist only
there, and IPv6 is off so that neighbour discovery does not add packets
the tests cannot predict (ARP still flows). :func:`inside` moves the
calling thread into a namespace for the duration of a ``with`` block:
interfaces are looked up there, and sockets made there stay there. The
namespaces are removed by :meth:`VethPair.remove`, which the fixtures call
also when a test fails.
"""

import contextlib
import ctypes
import os
import socket
import subprocess
import time
from typing import Iterator, List

CLONE_NEWNET = 0x40000000
ADDRESS_A, ADDRESS_B = "192.0.2.1", "192.0.2.2"
_libc = ctypes.CDLL(None, use_errno=True)


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), result.stderr.strip()))
    return result.stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run the block in ``namespace`` (this thread only), then come back."""
    with open("/proc/thread-self/ns/net") as home, open("/run/netns/" + namespace) as there:
        _setns(there.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


class VethPair:
    """Namespaces ``a`` and ``b`` (unique names), ``va`` in ``a`` and ``vb``
    in ``b``, addressed and up."""

    def __init__(self, tag: str):
        self.a = "pybpf-%s-%d-a" % (tag, os.getpid())
        self.b = "pybpf-%s-%d-b" % (tag, os.getpid())
        self._made: List[str] = []

    def create(self) -> "VethPair":
        for namespace in (self.a, self.b):
            _run("ip", "netns", "add", namespace)
            self._made.append(namespace)
            for key in ("all", "default"):
                self.run_in(namespace, "sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % key)
            self.run_in(namespace, "ip", "link", "set", "lo", "up")
        _run("ip", "link", "add", "va", "netns", self.a, "type", "veth",
             "peer", "name", "vb", "netns", self.b)
        for namespace, device, address in ((self.a, "va", ADDRESS_A), (self.b, "vb", ADDRESS_B)):
            self.run_in(namespace, "ip", "addr", "add", address + "/24", "dev", device)
            self.run_in(namespace, "ip", "link", "set", device, "up")
        return self

    def remove(self) -> None:
        """Delete the namespaces (and with them the veth pair)."""
        while self._made:
            subprocess.run(["ip", "netns", "del", self._made.pop()], capture_output=True)

    def run_in(self, namespace: str, *argv: str) -> str:
        return _run("ip", "netns", "exec", namespace, *argv)

    def ping(self, count: int) -> None:
        """``count`` echo requests from a to b, each answered."""
        self.run_in(self.a, "ping", "-q", "-c", str(count), "-i", "0.01", "-W", "2", ADDRESS_B)

    def udp_socket(self, namespace: str, port: int = 0) -> socket.socket:
        """A UDP socket in ``namespace``, bound to its address and ``port``."""
        with inside(namespace):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((ADDRESS_A if namespace == self.a else ADDRESS_B, port))
        return sock

    def send_udp(self, port: int, count: int, payload: bytes) -> None:
        """``count`` datagrams of ``payload`` from a to b's ``port``."""
        with contextlib.closing(self.udp_socket(self.a)) as sender:
            for _ in range(count):
                sender.sendto(payload, (ADDRESS_B, port))


def receive(sock: socket.socket, expected: int, timeout: float = 5.0) -> int:
    """How many datagrams arrive on ``sock``: waits until ``expected`` came
    (or ``timeout``), then takes what else is already there."""
    received = 0
    deadline = time.monotonic() + timeout
    while received < expected and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            sock.recv(65536)
        except socket.timeout:
            break
        received += 1
    sock.setblocking(False)
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return received
        received += 1
