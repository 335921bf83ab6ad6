"""A real Apache Kafka broker on loopback, from Maven Central jars, without Docker.

``LocalBroker`` fetches the jars once (``mvn dependency:copy-dependencies`` on this
folder's ``pom.xml``) into a cache shared by every data directory, formats KRaft storage
on first start, starts ``kafka.Kafka`` as a detached process, and waits until the broker
answers a metadata request. Its logs and data live in ``<data dir>/kafka`` (or a
``node-<id>`` subfolder for multi-node clusters) and survive restarts.

Contract:
- ``start()`` is idempotent: a broker already running from the same folder is reused.
- A port held by anything else fails fast with :class:`BrokerError` naming the port.
- ``stop()`` sends SIGTERM (a controlled shutdown that flushes the log), then SIGKILL
  after a deadline; it returns only once the process is gone.

Clusters: :func:`cluster_nodes` gives every node its ports and the shared voter list, and
every node's ``LocalBroker`` gets the same ``cluster_id`` (:func:`new_cluster_id`). A node
answers only once a majority of the voters runs, so :func:`start_cluster` launches all of
them before waiting for any; :func:`stop_cluster` stops them together, because the last
node of a cluster stopped one by one has no quorum to approve its controlled shutdown and
would wait minutes for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from infra.errors import BrokerError

HERE = Path(__file__).resolve().parent
KAFKA_VERSION = "4.1.1"
READY_MARKER = ".complete"


def jars_dir(cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"


def fetch_jars(cache_dir: Path, *, quiet: bool = True) -> Path:
    """Download the broker jars into the cache once; later calls return at once."""
    libs = jars_dir(cache_dir)
    if (libs / READY_MARKER).exists():
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not on PATH: it is needed once to fetch the Kafka jars")
    staging = libs.with_name(f"libs.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = ["mvn", "-B", "-f", str(HERE / "pom.xml"), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
    if quiet:
        cmd.insert(2, "-q")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise BrokerError(f"fetching Kafka {KAFKA_VERSION} jars with mvn failed:\n{tail}")
    (staging / READY_MARKER).write_text(KAFKA_VERSION)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def broker_answers(bootstrap: str, timeout: float = 3.0, *, connection: Mapping[str, Any] | None = None) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request within ``timeout`` seconds.

    ``connection``: the client options of a secured cluster (``clients.connection(settings)``:
    TLS, SASL), without which a broker that requires them does not answer.

    Returns False within about ``timeout`` whatever is (not) there: a TCP connect to each
    server first (nothing listening fails at once), then the client's bootstrap, which
    fetches metadata, and its requests are bounded by what is left of ``timeout`` (the
    client's own defaults would retry with backoff for 30 s).
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if not any(_accepts(server, deadline) for server in servers):
        return False
    left_ms = max(100, int((deadline - time.monotonic()) * 1000))
    try:
        admin = KafkaAdminClient(**{**(connection or {}), "bootstrap_servers": bootstrap,
                                    "bootstrap_timeout_ms": left_ms, "request_timeout_ms": left_ms})
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _accepts(server: str, deadline: float) -> bool:
    """Whether ``host:port`` accepts a TCP connection before ``deadline`` (a monotonic time)."""
    host, _, port = server.rpartition(":")
    if not port.isdigit():
        return False
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                      timeout=max(0.05, deadline - time.monotonic())):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class NodeSpec:
    """Where one KRaft node listens and which voters form its controller quorum."""

    node_id: int = 1
    port: int = 9092
    controller_port: int = 9093
    voters: str = "1@127.0.0.1:9093"
    cluster_size: int = 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def cluster_nodes(ports: Sequence[tuple[int, int]]) -> list[NodeSpec]:
    """One spec per ``(port, controller_port)``, ids 1..n, every node a voter of the same quorum."""
    voters = ",".join(f"{i}@127.0.0.1:{controller}" for i, (_, controller) in enumerate(ports, start=1))
    return [NodeSpec(i, port, controller, voters, len(ports)) for i, (port, controller) in enumerate(ports, start=1)]


def new_cluster_id() -> str:
    """A fresh KRaft cluster id (22 chars, base64url of 16 random bytes), never starting with "-"
    (as Kafka's own Uuid.randomUuid: a leading dash reads as an option on the command line)."""
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class SecureListener:
    """A second listener, SASL_SSL on ``port``: TLS with the key and certificates of ``keystore``
    (a PEM file: PKCS#8 key, certificate, its chain; ``certs.local_certificates`` makes one) and
    SASL PLAIN for ``users`` (name -> password). The PLAINTEXT listener stays, for the broker's
    own traffic and tools; a deployment would close it (docs/security.md)."""

    port: int
    keystore: Path
    users: Mapping[str, str]

    def properties(self) -> str:
        key, chain = _pem_parts(self.keystore.read_text())
        users = " ".join(f'user_{name}="{_jaas_quoted(password)}"' for name, password in self.users.items())
        return "\n".join([
            "", "# The SASL_SSL listener (LocalBroker(secure=...)).",
            "sasl.enabled.mechanisms=PLAIN",
            "listener.name.secure.sasl.enabled.mechanisms=PLAIN",
            "listener.name.secure.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f"required {_property_escaped(users)};",
            "listener.name.secure.ssl.keystore.type=PEM",
            f"listener.name.secure.ssl.keystore.key={_property_escaped(key)}",
            f"listener.name.secure.ssl.keystore.certificate.chain={_property_escaped(chain)}", ""])


def _pem_parts(text: str) -> tuple[str, str]:
    """The private key block and the certificate blocks of a PEM file."""
    end = "-----END PRIVATE KEY-----"
    if "-----BEGIN PRIVATE KEY-----" not in text or end not in text:
        raise BrokerError("the secure listener's keystore needs an unencrypted PKCS#8 key (BEGIN PRIVATE KEY)")
    key, _, chain = text.partition(end)
    return key.strip() + "\n" + end + "\n", chain.strip() + "\n"


def _jaas_quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _property_escaped(text: str) -> str:
    """``text`` as one line of a Java properties file (newlines and backslashes escaped)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class LocalBroker:
    """One KRaft broker+controller process whose files live in ``home``."""

    def __init__(self, home: Path, cache_dir: Path, node: NodeSpec | None = None,
                 heap: str = "512m", cluster_id: str | None = None, secure: SecureListener | None = None) -> None:
        self.home = home.resolve()
        self.cache_dir = cache_dir
        self.node = node or NodeSpec()
        self.secure = secure
        self.heap_mb = _megabytes(heap)
        self._cluster_id = cluster_id
        if self.node.cluster_size > 1 and not cluster_id:
            raise BrokerError(f"node {self.node.node_id} of a {self.node.cluster_size}-node cluster needs the "
                              f"cluster id shared by all nodes (cluster_id=new_cluster_id(), once per cluster)")
        self._proc: subprocess.Popen[bytes] | None = None

    # Files -------------------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def stdout_file(self) -> Path:
        return self.home / "stdout.log"

    @property
    def log_dirs(self) -> Path:
        return self.home / "logs"

    @property
    def bootstrap(self) -> str:
        return self.node.bootstrap

    def pid(self) -> int | None:
        """The pid of this folder's broker if that process is alive, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
            return None  # the pid was reused by an unrelated process
        return pid

    def status(self) -> dict[str, object]:
        pid = self.pid()
        return {"running": pid is not None, "pid": pid, "bootstrap": self.bootstrap,
                "answers": pid is not None and broker_answers(self.bootstrap, timeout=2.0),
                "home": str(self.home)}

    # Lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 60.0, *, wait: bool = True) -> float:
        """Start (or reuse) the broker; return seconds until it answered.

        ``wait=False`` returns once the process is launched (a cluster node cannot answer
        before a quorum runs); call :meth:`wait_ready` later.
        """
        began = time.monotonic()
        if self.pid() is not None:
            if wait:
                self.wait_ready(timeout)
            return time.monotonic() - began
        for port in (self.node.port, self.node.controller_port, *([self.secure.port] if self.secure else [])):
            if not port_is_free(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use by another process; stop it or "
                    f"point VECTORIZER_KAFKA_BOOTSTRAP at that broker if it is one")
        libs = fetch_jars(self.cache_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        props = self._render_properties()
        if not (self.log_dirs / "meta.properties").exists():
            self._format(libs, props)
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH: Java 17 is needed to run the broker")
        cmd = [java, f"-Xmx{self.heap_mb}m", f"-Xms{min(256, self.heap_mb)}m",
               "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
               f"-Dkafka.logs.dir={self.home}", "-cp", f"{libs}/*", "kafka.Kafka", str(props)]
        with open(self.stdout_file, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.home, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        self._proc = proc
        if not wait:
            return time.monotonic() - began
        try:
            self.wait_ready(timeout)
        except BrokerError:
            self.stop()
            raise
        return time.monotonic() - began

    def wait_ready(self, timeout: float) -> None:
        """Wait until the broker answers; fail early if the process this object launched exited."""
        proc = self._proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"the broker exited with code {proc.returncode} while starting:\n"
                                  f"{self.log_tail()}")
            if broker_answers(self.bootstrap, timeout=2.0):
                return
            time.sleep(0.2)
        raise BrokerError(f"the broker did not answer on {self.bootstrap} within {timeout:.0f}s:\n"
                          f"{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker; return True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            self._proc = None
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        self._finish_stop(pid, timeout)
        return True

    def _finish_stop(self, pid: int, timeout: float) -> None:
        """Wait for a SIGTERMed broker to exit; SIGKILL it after ``timeout``."""
        if not _wait_gone(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10.0)
        self._reap()
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the broker at once (fault injection); ``start()`` brings it back."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if _wait_gone(pid, 10.0):
                self.pid_file.unlink(missing_ok=True)  # a dead pid could be reused by another broker
        self._reap()

    def _reap(self) -> None:
        """Collect the exit status of the process this object launched (no zombie, no warning)."""
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                self._proc.wait(1.0)
            self._proc = None

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.stdout_file, self.log_file):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text or "(no broker log yet)"

    # Internals ---------------------------------------------------------------------
    def _render_properties(self) -> Path:
        rf = min(3, self.node.cluster_size)
        single = self.node.cluster_size == 1
        text = Template((HERE / "server.properties").read_text()).substitute(
            node_id=self.node.node_id, voters=self.node.voters, port=self.node.port,
            controller_port=self.node.controller_port, log_dirs=self.log_dirs,
            internal_rf=rf, internal_min_isr=max(1, rf - 1),
            heartbeat_ms=2000 if single else 500, session_timeout_ms=9000 if single else 4000)
        if self.secure is not None:
            text = self._with_secure_listener(text, self.secure)
        path = self.home / "server.properties"
        path.write_text(text)
        return path

    def _with_secure_listener(self, text: str, secure: SecureListener) -> str:
        address = f"SECURE://127.0.0.1:{secure.port}"
        lines = []
        for line in text.splitlines():
            if line.startswith(("listeners=", "advertised.listeners=")):
                line = f"{line},{address}"
            elif line.startswith("listener.security.protocol.map="):
                line = f"{line},SECURE:SASL_SSL"
            lines.append(line)
        return "\n".join(lines) + "\n" + secure.properties()

    def _format(self, libs: Path, props: Path) -> None:
        cluster_id = self._cluster_id or _cluster_id_for(self.home)
        result = subprocess.run(
            ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
             f"-Dkafka.logs.dir={self.home}", "-cp", f"{libs}/*", "kafka.tools.StorageTool",
             "format", "--ignore-formatted", f"--cluster-id={cluster_id}", "-c", str(props)],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")


def start_cluster(brokers: Sequence[LocalBroker], timeout: float = 120.0) -> float:
    """Launch every node (formatting in parallel), then wait until each answers; return seconds.

    On failure every node is stopped and the error names the node that failed.
    """
    began = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=len(brokers)) as pool:
            for future in [pool.submit(b.start, timeout, wait=False) for b in brokers]:
                future.result()
        for broker in brokers:
            broker.wait_ready(max(1.0, timeout - (time.monotonic() - began)))
    except BrokerError:
        stop_cluster(brokers)
        raise
    return time.monotonic() - began


def stop_cluster(brokers: Sequence[LocalBroker], timeout: float = 30.0) -> int:
    """SIGTERM every running node at once, wait for all; return how many were running.

    Together, each node's controlled shutdown is approved while the controllers still have
    a quorum; one by one, the last node would wait for a quorum that is gone.
    """
    running = [(b, pid) for b in brokers if (pid := b.pid()) is not None]
    for _, pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for broker, pid in running:
        broker._finish_stop(pid, max(0.0, deadline - time.monotonic()))  # noqa: SLF001 - the same class, for a cluster
    for broker in brokers:
        if broker.pid() is None:
            broker.pid_file.unlink(missing_ok=True)
    return len(running)


def _megabytes(heap: str) -> int:
    """``"384m"``, ``"1g"``, ``"524288k"`` or a byte count as whole MiB (the JVM's -Xmx forms)."""
    text = heap.strip().lower()
    scale = {"k": 1 / 1024, "m": 1, "g": 1024}.get(text[-1:])
    try:
        mb = int(float(text[:-1]) * scale) if scale is not None else int(text) // (1024 * 1024)
    except ValueError:
        raise BrokerError(f"heap {heap!r}: expected a size such as 384m or 1g") from None
    if mb < 64:
        raise BrokerError(f"heap {heap!r}: the broker needs at least 64m")
    return mb


def _cluster_id_for(home: Path) -> str:
    """A KRaft cluster id for a single node, stable per folder once made."""
    id_file = home / "cluster.id"
    if id_file.exists():
        return id_file.read_text().strip()
    cid = new_cluster_id()
    id_file.write_text(cid)
    return cid


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # Reap it if it is our child (avoids a zombie that os.kill still sees).
        with contextlib.suppress(ChildProcessError, OSError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        if _is_zombie(pid):
            return True
        time.sleep(0.1)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
