"""A real FreeSWITCH instance per test session, built the way README's install steps say:

1. the minimal node configuration of ``conf/freeswitch/`` becomes the instance's ``conf/``;
2. ``conf/autoload_configs/python.conf.xml`` goes into its ``autoload_configs/``;
3. the files of ``dialplan/`` go into ``dialplan/default/``, ``10_fsapps_acd.xml`` also into
   ``dialplan/public/``;
4. what differs per node is set in ``vars.xml`` (ports, switch name);
5. fsapps is installed with ``python3 -m pip install --target SITE .`` into Debian's python3
   (the one mod_python3 links) and FreeSWITCH runs with ``PYTHONPATH=SITE`` and
   ``FSAPPS_CONFIG`` naming the node's fsapps.yaml.

Every directory is the instance's own (``-conf -log -db ...``), every listener on 127.0.0.1 on
a free port, so several instances (and several test runs) share the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from tools.esl import Esl
from tools.servers import free_port, held_sip_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
FS_PREFIX = Path(os.environ.get("FS_PREFIX", "/usr/local/freeswitch"))
SYSTEM_PYTHON = os.environ.get("FS_PYTHON", "/usr/bin/python3")
ESL_PASSWORD = "ClueCon"


def missing_switch() -> str | None:
    """Why the real-switch tier cannot run here, or None when it can."""
    binary = FS_PREFIX / "bin" / "freeswitch"
    if not binary.exists():
        return f"no FreeSWITCH at {binary} (set FS_PREFIX, or run ../shared/freeswitch/install.sh)"
    if not (FS_PREFIX / "mod" / "mod_python3.so").exists():
        return f"no mod_python3 in {FS_PREFIX / 'mod'}"
    if shutil.which("sipp") is None:
        return "no sipp on PATH (Debian package sip-tester)"
    if not Path(SYSTEM_PYTHON).exists():
        return f"no {SYSTEM_PYTHON} (the python mod_python3 links against; set FS_PYTHON)"
    return None


def install_fsapps(site: Path, source: Path = ROOT) -> Path:
    """README step: ``python3 -m pip install --target SITE .`` with the switch's own python
    (``source``: the checkout to install, this one by default)."""
    site.mkdir(parents=True, exist_ok=True)
    subprocess.run([SYSTEM_PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-warn-script-location", "--upgrade", "--target", str(site), str(source)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return site


def _set_var(text: str, name: str, value: str) -> str:
    pattern = re.compile(rf'data="{re.escape(name)}=[^"]*"')
    if not pattern.search(text):
        raise KeyError(f"vars.xml sets no {name}")
    return pattern.sub(f'data="{name}={value}"', text)


def merged_settings(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section."""
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = {**merged[key], **value} \
            if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def write_tone_wav(path: Path, seconds: float = 2.0, rate: int = 8000) -> None:
    """A quiet 440 Hz tone: hold music for mod_local_stream (no sound packs offline)."""
    import math
    import struct

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / rate)))
                          for i in range(int(seconds * rate)))
        out.writeframes(frames)


@dataclass
class RealSwitch:
    """One FreeSWITCH process: ``start()``, ``stop()`` (a clean ``shutdown``), ``kill()``."""

    name: str
    base: Path
    site: Path
    redis_url: str
    postgres_dsn: str
    domains: tuple[str, ...] = ("test.fsapps",)
    node_name: str = ""
    fsapps_extra: dict[str, object] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    internal_port: int = field(default_factory=held_sip_port)
    external_port: int = field(default_factory=held_sip_port)
    esl_port: int = field(default_factory=free_port)
    # browsers (the WebRTC agent console) register here: sofia's ws-binding on 127.0.0.1
    ws_port: int = field(default_factory=free_port)
    rtp_start: int = 0
    # False: a FreeSWITCH without fsapps (make bench-switch's mod_callcenter and plain-bridge
    # switches); start() then waits for the core, not for fsapps' runtime.
    with_fsapps: bool = True
    proc: subprocess.Popen[bytes] | None = None
    _esl: Esl | None = None

    def __post_init__(self) -> None:
        if not self.rtp_start:
            # A disjoint RTP range per instance: the lowest free port of a random block.
            import random

            self.rtp_start = random.randrange(20000, 60000, 400)
        self.dir = self.base / self.name
        self.conf = self.dir / "conf"

    # ------------------------------------------------------------------ build -------------
    def build(self, trunk_port: int = 0) -> RealSwitch:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        shutil.copytree(ROOT / "conf" / "freeswitch", self.conf)
        shutil.copy(ROOT / "conf" / "autoload_configs" / "python.conf.xml",
                    self.conf / "autoload_configs" / "python.conf.xml")
        for snippet in sorted((ROOT / "dialplan").glob("*.xml")):
            shutil.copy(snippet, self.conf / "dialplan" / "default" / snippet.name)
        shutil.copy(ROOT / "dialplan" / "10_fsapps_acd.xml",
                    self.conf / "dialplan" / "public" / "10_fsapps_acd.xml")
        self.set_vars(fsapps_switchname=self.name, internal_sip_port=str(self.internal_port),
                      external_sip_port=str(self.external_port),
                      event_socket_port=str(self.esl_port),
                      internal_ws_port=str(self.ws_port),
                      # media to Chromium's 127.0.0.1 candidates only (it offers the host's
                      # other addresses too; --allow-loopback-in-peer-connection adds these)
                      webrtc_candidate_acl_lan="loopback.auto",
                      webrtc_candidate_acl_wan="loopback.auto",
                      rtp_start_port=str(self.rtp_start), rtp_end_port=str(self.rtp_start + 399),
                      trunk_proxy=f"127.0.0.1:{trunk_port or held_sip_port()}")
        for sub in ("log", "db", "run", "scripts", "temp", "cache", "recordings", "storage",
                    "certs", "htdocs", "grammar"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        write_tone_wav(self.dir / "sounds" / "music" / "8000" / "tone.wav")
        self.write_fsapps_yaml()
        return self

    def set_vars(self, **values: str) -> None:
        path = self.conf / "vars.xml"
        text = path.read_text()
        for name, value in values.items():
            text = _set_var(text, name, value)
        path.write_text(text)

    def write_fsapps_yaml(self) -> None:
        settings: dict[str, object] = {
            "redis": {"url": self.redis_url},
            "postgres": {"dsn": self.postgres_dsn},
            "domains": list(self.domains),
            "default_domain": self.domains[0],
            "node_name": self.node_name,
        }
        (self.dir / "fsapps.yaml").write_text(
            yaml.safe_dump(merged_settings(settings, self.fsapps_extra)))

    @property
    def config_path(self) -> Path:
        return self.dir / "fsapps.yaml"

    # ------------------------------------------------------------------ process -----------
    def command(self) -> list[str]:
        d = self.dir
        return [str(FS_PREFIX / "bin" / "freeswitch"), "-nc", "-nf", "-nonat", "-nonatmap",
                "-conf", str(self.conf), "-log", str(d / "log"), "-db", str(d / "db"),
                "-run", str(d / "run"), "-scripts", str(d / "scripts"), "-temp", str(d / "temp"),
                "-cache", str(d / "cache"), "-recordings", str(d / "recordings"),
                "-storage", str(d / "storage"), "-sounds", str(d / "sounds"),
                "-certs", str(d / "certs"), "-htdocs", str(d / "htdocs"),
                "-grammar", str(d / "grammar"), "-mod", str(FS_PREFIX / "mod")]

    def start(self, timeout: float = 60.0) -> RealSwitch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FSAPPS_")}
        env.update(PYTHONPATH=str(self.site), FSAPPS_CONFIG=str(self.config_path),
                   LD_LIBRARY_PATH=str(FS_PREFIX / "lib"))
        env.update(self.environ)
        self.console = open(self.dir / "console.log", "ab")  # kept open for the run
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self.console,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        wait_for_port(self.esl_port, timeout=timeout)
        while True:
            try:
                reply = self.api("python fsapps.diag" if self.with_fsapps else "status")
            except OSError:
                reply = ""
            if self.with_fsapps and reply.startswith("+OK") and self.heartbeat_seen():
                break
            if not self.with_fsapps and " is ready" in reply:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: freeswitch exited {self.proc.returncode}; "
                                   f"see {self.dir / 'console.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: fsapps not ready in {timeout}s: {reply!r}; "
                                   f"see {self.dir / 'console.log'}")
            time.sleep(0.2)
        return self

    def heartbeat_seen(self) -> bool:
        """fsapps' runtime on this node beats in Redis (it consumes the switch's events)."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            return client.zscore("fsapps:{nodes}:nodes", self.node_name or self.name) is not None
        finally:
            client.close()

    def ready_for(self, check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {what or 'condition'} not met in {timeout}s")
            time.sleep(0.05)

    def esl(self) -> Esl:
        if self._esl is None:
            self._esl = Esl(self.esl_port, ESL_PASSWORD)
        return self._esl

    def api(self, command: str) -> str:
        try:
            return self.esl().api(command)
        except OSError:
            self._drop_esl()
            raise

    def _drop_esl(self) -> None:
        if self._esl is not None:
            try:
                self._esl.close()
            except OSError:
                pass
            self._esl = None

    def fs_cli(self, command: str, timeout: float = 30.0) -> str:
        """``fs_cli -x`` as an administrator types it (aliases expand there, not over ESL)."""
        out = subprocess.run([str(FS_PREFIX / "bin" / "fs_cli"), "-H", "127.0.0.1", "-P",
                              str(self.esl_port), "-p", ESL_PASSWORD, "-x", command],
                             capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "LD_LIBRARY_PATH": str(FS_PREFIX / "lib")})
        return out.stdout

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 40.0) -> None:
        """``fsctl shutdown`` (calls are hung up by the switch, as an administrator's stop)."""
        if not self.running:
            return
        assert self.proc is not None
        try:
            self.api("fsctl shutdown")
        except OSError:
            pass
        self._drop_esl()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.console.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._drop_esl()

    def log_text(self) -> str:
        return (self.dir / "console.log").read_text(errors="replace")


if __name__ == "__main__":  # manual: python -m tools.realswitch /tmp/fsx
    base = Path(sys.argv[1])
    sw = RealSwitch("fs1", base, install_fsapps(base / "site"), sys.argv[2], sys.argv[3])
    sw.build().start()
    print("esl", sw.esl_port, "internal", sw.internal_port, "external", sw.external_port)
