"""The Google Pub/Sub emulator as a child process, for dev and tests.

The emulator ships with the Cloud SDK (``gcloud components install pubsub-emulator``, or
the Debian package ``google-cloud-cli-pubsub-emulator``) and needs Java. It keeps its state
in memory only. Clients reach it through ``PUBSUB_EMULATOR_HOST=<host>``.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import structlog

INSTALL_HINT: Final = (
    "install the emulator with `gcloud components install pubsub-emulator` or the Debian package"
    " `google-cloud-cli-pubsub-emulator`"
)
READY_MARKER: Final = "Server started"
_LAUNCHER: Final = Path("platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator")
_OUTPUT_LINES: Final = 200
_PORT_ATTEMPTS: Final = 3
_BIND_FAILED: Final = "java.net.BindException"
_log = structlog.get_logger(__name__)


class EmulatorNotFoundError(RuntimeError):
    """The emulator, the Cloud SDK holding it, or the Java it runs on is not installed."""


class EmulatorStartError(RuntimeError):
    """The emulator process exited or did not report ready before its deadline."""


def _gcloud_info_root(gcloud: str) -> Path | None:
    """The SDK root as ``gcloud info`` reports it (slow: gcloud starts a Python)."""
    try:
        info = subprocess.run(  # noqa: S603 (fixed arguments, gcloud found on PATH)
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    root = info.stdout.strip()
    return Path(root) if info.returncode == 0 and root else None


def find_emulator() -> Path:
    """The emulator's launcher script; raise ``EmulatorNotFoundError`` naming what is missing.

    Looks beside ``gcloud`` (symlinks followed: ``<sdk_root>/bin/gcloud``), then in the SDK
    root that ``gcloud info`` reports.
    """
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorNotFoundError(
            "Pub/Sub emulator not found: `gcloud` is not on PATH; install the Google Cloud"
            f" CLI, then {INSTALL_HINT}"
        )
    looked = [Path(gcloud).resolve().parent.parent / _LAUNCHER]
    if not looked[0].is_file():
        root = _gcloud_info_root(gcloud)
        if root is not None and root / _LAUNCHER not in looked:
            looked.append(root / _LAUNCHER)
    launcher = next((path for path in looked if path.is_file()), None)
    if launcher is None:
        where = ", ".join(map(str, looked))
        raise EmulatorNotFoundError(f"Pub/Sub emulator not found at {where}; {INSTALL_HINT}")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise EmulatorNotFoundError(
            "the Pub/Sub emulator needs Java: no `java` on PATH and JAVA_HOME is unset"
            " (install a JRE 11+, e.g. the Debian package `default-jre-headless`)"
        )
    return launcher


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


class _PortInUseError(EmulatorStartError):
    """Another process holds the port (the emulator then hangs instead of exiting)."""


class PubSubEmulator:
    """One emulator process on loopback, started in its own process group.

    ``stop`` signals only that group, and only while the process is still unreaped, so its
    PID cannot have been reused by anything else. It also runs at interpreter exit; a
    process killed outright (SIGKILL) leaves the emulator running.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        launcher: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        """Prepare, without starting; ``port`` None picks a free one."""
        self._bind = "127.0.0.1"
        self._fixed_port = port
        self._port = port
        self._launcher = launcher
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._bind_failed = threading.Event()
        self._output: deque[str] = deque(maxlen=_OUTPUT_LINES)
        self.startup_seconds: float | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the value for ``PUBSUB_EMULATOR_HOST``."""
        if self._process is None or self._port is None:
            raise EmulatorStartError("the emulator is not started")
        return f"{self._bind}:{self._port}"

    @property
    def pid(self) -> int:
        """The emulator's process id (also its process group id)."""
        if self._process is None:
            raise EmulatorStartError("the emulator is not started")
        return self._process.pid

    def output(self) -> str:
        """The emulator's most recent output lines (for error messages)."""
        return "".join(self._output)

    def start(self) -> Self:
        """Start the process and wait until it logs that it serves; raise on failure.

        A port picked here that someone else binds first is replaced by another, twice.
        """
        if self._process is not None:
            raise EmulatorStartError("the emulator is already started")
        launcher = self._launcher or find_emulator()
        started = time.monotonic()
        attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self._port = self._fixed_port or free_port(self._bind)
            try:
                self._launch(launcher, started + self._startup_timeout)
                break
            except _PortInUseError:
                if attempt == attempts:
                    raise
                self._process = None
        self.startup_seconds = time.monotonic() - started
        atexit.register(self.stop)  # a caller that never reaches its stop() still leaves no orphan
        _log.info(
            "pubsub_emulator_started",
            host=self.host,
            pid=self.pid,
            startup_seconds=round(self.startup_seconds, 3),
        )
        return self

    def _launch(self, launcher: Path, deadline: float) -> None:
        self._ready.clear()
        self._bind_failed.clear()
        self._output.clear()
        process = subprocess.Popen(  # noqa: S603 (our launcher path, fixed flags)
            [str(launcher), f"--host={self._bind}", f"--port={self._port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        self._process = process
        self._reader = threading.Thread(
            target=self._drain, args=(process,), name=f"pubsub-emulator-{self._port}", daemon=True
        )
        self._reader.start()
        while not self._ready.wait(timeout=0.05):
            code = process.poll()
            if code is not None:
                self._join_reader()
                raise EmulatorStartError(
                    f"the Pub/Sub emulator exited with code {code} before it was ready:"
                    f"\n{self.output()}"
                )
            if self._bind_failed.is_set():
                self.stop()
                raise _PortInUseError(f"port {self._port} is in use:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmulatorStartError(
                    f"the Pub/Sub emulator did not log {READY_MARKER!r} within"
                    f" {self._startup_timeout:g}s:\n{self.output()}"
                )

    def _drain(self, process: "subprocess.Popen[str]") -> None:
        """Read the output to its end, so the pipe never fills and blocks the emulator."""
        assert process.stdout is not None  # noqa: S101 (stdout=PIPE)
        for line in process.stdout:
            self._output.append(line)
            if READY_MARKER in line:
                self._ready.set()
            elif _BIND_FAILED in line:
                self._bind_failed.set()

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the emulator's process group and wait for it; safe to call twice."""
        process = self._process
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout)
            _log.info("pubsub_emulator_stopped", pid=process.pid, exit_code=process.returncode)
        self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> Self:
        """Start the emulator."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the emulator."""
        self.stop()
