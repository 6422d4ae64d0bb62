"""fsapps' threads carry their own names for the system (fsapps/threads.py): a thread takes
its creator's name, so those fsapps starts name themselves."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fsapps.config import CtiBridgeSettings
from fsapps.switch import httproute
from fsapps.threads import name_os_thread


def own_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


def in_thread(work: object) -> dict[str, str]:
    seen: dict[str, str] = {}

    def run() -> None:
        seen.update(work())  # type: ignore[operator]
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return seen


def test_a_name_is_cut_to_what_linux_keeps() -> None:
    def work() -> dict[str, str]:
        name_os_thread("reconcile")
        return {"name": own_name()}
    assert in_thread(work) == {"name": "fsapps-reconcil"}


def test_a_cti_bridge_sender_started_from_a_named_thread_has_its_own_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The events thread sends a B leg's ring: the sender it starts is not "fsapps-events"."""
    monkeypatch.setattr(httproute, "_workers", [])

    def work() -> dict[str, str]:
        name_os_thread("events")
        try:
            sender = httproute._worker_for(CtiBridgeSettings(), "call-1")
            return {"creator": own_name(), "sender": sender.submit(own_name).result(10)}
        finally:
            for worker in httproute._workers:
                worker.shutdown()
    assert in_thread(work) == {"creator": "fsapps-events", "sender": "fsapps-notify"}
