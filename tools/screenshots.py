"""``python -m tools.screenshots [--out docs]`` — the README tour's two screenshots, taken from
a running ``make demo``.

The demo (``python -m tools.demo``, a subprocess on 127.0.0.1) is started as ``make demo``
starts it; headless Chromium (the system /usr/bin/chromium, as the browser tests launch it)
logs into the agent console and the wallboard with the URLs the demo prints. The wallboard is
captured once the scripted opening's burst shows callers waiting, calls ringing and calls
talking (``demo-wallboard.png``); the agent console (1001, set ready) once a queue call is
talking, after the agent typed a call-data entry as the tour describes (``agent-page.png``).
The pages keep the language they pick from the browser's (headless Chromium: English).
The demo is then stopped as Ctrl-C stops it: calls hung up, servers and database gone.

Needs what ``make demo`` needs plus Chromium and Playwright (``make system``, ``make venv``).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PageTimeout
from playwright.sync_api import sync_playwright

from tools.servers import free_port

CHROMIUM = "/usr/bin/chromium"
# As tests/browser_support.py: root in a closed network, no sandbox, no background traffic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 20_000
REPO = Path(__file__).resolve().parent.parent
# The demo's page lines (tools.demo.page_lines): "<page>  <url>  (password ...)".
PAGE_LINE = re.compile(r"^(wallboard|agent console)\s+(http://127\.0\.0\.1:\d+/\S*)")
# The wallboard shows what the tour promises: callers waiting, calls ringing, calls talking,
# agents listed with their job numbers. BUSY_BOARD also waits for the burst's first calls to
# end (at most 26 rows of calls): the full-page image stays under ~350 KB. A demo that never
# gets there is captured at the first moment that has each at all (ANY_BOARD).
BOARD_CHECK = """() => {
  const n = id => parseInt(document.getElementById(id).textContent, 10) || 0;
  const jobs = [...document.querySelectorAll('#agents tbody tr td:nth-child(2)')]
    .filter(td => /^8\\d{3}$/.test(td.textContent.trim())).length;
  const rows = document.querySelectorAll('#calls tbody tr').length;
  return n('statWaiting') >= %d && n('statRinging') >= 1 && n('statCalls') >= %d
    && jobs >= 10 && rows <= %d;
}"""
BUSY_BOARD = BOARD_CHECK % (3, 8, 26)
ANY_BOARD = BOARD_CHECK % (1, 1, 1000)
CALL_DATA = ("orderId", "A-20931")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.screenshots",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "docs",
                   help="where demo-wallboard.png and agent-page.png are written (docs)")
    return p.parse_args(argv)


def say(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)


class Demo:
    """``python -m tools.demo`` as a subprocess in its own session (a Ctrl-C in our terminal
    is ours; the demo is stopped by :meth:`stop`). Its lines are echoed and kept in a queue
    for :meth:`wait_for`."""

    def __init__(self, cti_port: int, started: float) -> None:
        self.started = started
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.demo", "--duration", "120",
             "--cti-port", str(cti_port)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            say(self.started, f"demo | {line}")
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first line from now on that matches ``pattern``; RuntimeError when the demo
        ends or ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"demo printed no line matching {pattern.pattern!r} "
                                   f"within {timeout:.0f} s") from None
            if line is None:
                raise RuntimeError(f"demo ended (exit {self.process.wait()}) before a line "
                                   f"matching {pattern.pattern!r}")
            if match := pattern.search(line):
                return match

    def stop(self, timeout: float = 120.0) -> int:
        """Stop the demo as Ctrl-C does (it hangs up the calls, stops its Redis, drops its
        database, prints its summary); killed only if that takes over ``timeout`` s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextmanager
def chromium() -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any) -> Any:
    # no locale: the pages pick their language from the browser's, as a visitor's would
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def agent_ready(page: Any, url: str) -> None:
    """Log into the agent console (the URL fills job, domain and extension) and go ready."""
    page.goto(url)
    page.fill("#password", "agent")
    page.click("#login")
    page.wait_for_selector("#workspace", state="visible")
    page.wait_for_selector("#agentState[data-mode='NotReady']")
    page.click("#setMode")
    page.wait_for_selector("#agentState[data-mode='Ready']")


def wallboard_login(page: Any, url: str) -> None:
    page.goto(url)
    page.fill("#password", "supervisor")
    page.click("#login")
    page.wait_for_selector("#board", state="visible")
    page.wait_for_selector("#liveState[data-mode='Ready']")


def capture_wallboard(page: Any, path: Path) -> None:
    """Once the board shows the queue the burst built (waiting, ringing and talking at once),
    capture it, the whole page."""
    try:
        page.wait_for_function(BUSY_BOARD, timeout=60_000, polling=200)
    except PageTimeout:  # the demo's pace changed: take what it shows
        page.wait_for_function(ANY_BOARD, timeout=60_000, polling=200)
    page.screenshot(path=str(path), full_page=True)


def capture_agent(page: Any, path: Path, tries: int = 5) -> None:
    """Wait for a queue call to be talking, enter a call-data entry as the agent would, and
    capture the page while the call still talks (a demo call talks 6-20 s; if it ends first,
    the next one is taken)."""
    for _ in range(tries):
        page.wait_for_selector("#callCard[data-state='talking']", timeout=90_000)
        page.fill("#udKey", CALL_DATA[0])
        page.fill("#udValue", CALL_DATA[1])
        page.click("#userDataForm button")
        try:
            page.wait_for_selector(f"#userData th:text('{CALL_DATA[0]}')", timeout=3000)
            page.wait_for_timeout(1200)  # the call timer shows a second or two
        except PageTimeout:  # the call ended meanwhile: the next one
            continue
        if page.get_attribute("#callCard", "data-state") == "talking":
            page.screenshot(path=str(path), full_page=True)
            return
    raise RuntimeError(f"no talking call kept still for a screenshot in {tries} tries")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(started, "starting the demo (python -m tools.demo) and headless Chromium")
    demo = Demo(free_port(), started)
    status = 1
    try:
        with chromium() as browser:
            urls: dict[str, str] = {}
            while len(urls) < 2:
                match = demo.wait_for(PAGE_LINE, timeout=120)
                urls[match.group(1)] = match.group(2)
            agent = new_page(browser)
            agent_ready(agent, urls["agent console"])
            language = agent.evaluate("() => i18n.lang")
            say(started, f"agent 1001 logged in and ready (page language: {language})")
            board = new_page(browser)
            wallboard_login(board, urls["wallboard"])
            say(started, "wallboard logged in; waiting for callers waiting, ringing, talking")
            wallboard_png = args.out / "demo-wallboard.png"
            capture_wallboard(board, wallboard_png)
            say(started, f"wrote {wallboard_png} ({wallboard_png.stat().st_size // 1024} KB)")
            agent_png = args.out / "agent-page.png"
            capture_agent(agent, agent_png)
            say(started, f"wrote {agent_png} ({agent_png.stat().st_size // 1024} KB)")
        status = 0
    finally:
        say(started, "stopping the demo")
        code = demo.stop()
        say(started, f"demo stopped (exit {code}); done in {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
