"""What the fake node's channels hear: playbacks (a file lasts its simulated duration), hold
and hold music, and the audio graph of bridges, eavesdrops, three-way calls and conferences
(:meth:`Media.hears`), the observable effect tests check instead of real audio.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from fakefs.channel import Channel, Interrupt, now_us

if TYPE_CHECKING:
    from fakefs.switch import Switch

# switch_ivr_bridge.c audio_bridge_thread: a bridged leg runs its queued private events (a
# broadcast: the hold music) only once it has read more than DEFAULT_LEAD_FRAMES (10) frames
# since the bridge began, and while its partner is suspended (held) it reads without counting.
# 11 frames of 20 ms.
BRIDGE_LEAD_US = 11 * 20_000
SPEAK_MS_PER_CHAR = 60


class Media:
    """Media of one node. ``durations`` (path -> ms) and ``default_file_ms`` say how long a
    file plays; tests set them. ``timed_early_ms``: how much sooner than the clock says a
    playback ends at its ``playback_timeout_sec`` - switch_ivr_play_file counts the samples it
    wrote, and after a stall a loaded switch writes the frames it owes back to back (0: on
    time, as on an idle switch)."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.durations: dict[str, int] = {}
        self.default_file_ms = 1000
        self.timed_early_ms = 0

    def duration_ms(self, path: str) -> float | None:
        """How long a playback lasts; None for endless sources (music on hold)."""
        if path in self.durations:
            return self.durations[path]
        if path.startswith("local_stream://"):
            return None
        if path.startswith("silence_stream://"):
            ms = int(path.split("//", 1)[1].split(",")[0] or 0)
            return None if ms < 0 else ms
        if path.startswith("speak://"):
            # mod_flite speaks about 15 characters a second
            return SPEAK_MS_PER_CHAR * len(path.rsplit("|", 1)[-1])
        if path.startswith("tone_stream://"):
            loops = re.search(r"loops=(-?\d+)", path)
            if loops and int(loops.group(1)) < 0:
                return None
            return 500
        return self.default_file_ms

    def play(self, channel: Channel, path: str,
             on_dtmf: Callable[[str], bool] | None = None, terminators: str = "",
             events: bool = True) -> str:
        """Play ``path`` to the channel. Returns "done", "hangup", "break" or "terminated"
        (a terminator or the DTMF callback stopped it). ``events`` False: no PLAYBACK_START /
        PLAYBACK_STOP (switch_ivr_speak_text fires none)."""
        switch = self.switch
        duration = self.duration_ms(path)
        # switch_ivr_play_file honours playback_timeout_sec: the playback stops after that long —
        # but only from 2 s up (its test is atoi(var) > 1; 1 means no limit).
        limit = channel.get("playback_timeout_sec") or ""
        if limit.isdigit() and int(limit) > 1:
            timed = int(limit) * 1000 - self.timed_early_ms
            duration = timed if duration is None else min(duration, timed)
        switch.pre_answer(channel)  # switch_ivr_play_file: media first (183 if not answered)
        channel.playing = path
        if events:
            switch.fire("PLAYBACK_START", channel, headers={"Playback-File-Path": path})
        result = "done"
        try:
            remaining = None if duration is None else switch.scaled(duration)
            start = now_us()
            while True:
                left = None if remaining is None else remaining - (now_us() - start) / 1e6
                if left is not None and left <= 0:
                    break
                try:
                    reason = channel.wait(left, dtmf=bool(on_dtmf or terminators))
                except Interrupt as interrupt:
                    if interrupt.reason == "break":
                        result = "break"
                        break
                    raise
                if reason == "hangup":
                    result = "hangup"
                    break
                if reason == "timeout":
                    break
                if reason == "dtmf":
                    digit = channel.dtmf.popleft()
                    if digit in terminators:
                        channel.set("playback_terminator_used", digit)
                        result = "terminated"
                        break
                    if on_dtmf is not None and on_dtmf(digit):
                        result = "terminated"
                        break
        finally:
            channel.playing = None
            if events:
                switch.fire("PLAYBACK_STOP", channel, headers={"Playback-File-Path": path,
                                                              "Playback-Status": result})
        return result

    def set_hold(self, channel: Channel, hold: bool, suspend: bool = False) -> None:
        """Hold / unhold (the phone's re-INVITE; with ``suspend``, switch_ivr_hold: ``uuid_hold``):
        the peer hears the hold music (:meth:`hears`). A ``uuid_hold`` within the bridge's
        lead frames (:data:`BRIDGE_LEAD_US` after the peer's bridge time) leaves the music
        broadcast queued (observed on FreeSWITCH 1.10.12): the peer hears nothing for the whole
        hold, and the unhold lets it run: the peer hears the looped hold music while the two talk
        again."""
        switch = self.switch
        if channel.held == hold:
            return
        peer = switch.channels.get(channel.peer) if channel.peer else None
        channel.held = hold
        if hold:
            bridged = peer.times.get("bridged", 0) if peer is not None else 0
            channel.hold_music_queued = (suspend and bool(bridged)
                                         and now_us() - bridged < BRIDGE_LEAD_US)
        elif channel.hold_music_queued:
            channel.hold_music_queued = False
            music = self.hold_music(channel)
            if peer is not None and peer.up and music:
                peer.playing = music
        if hold:
            channel.times["last_hold"] = now_us()
            switch.set_callstate(channel, "HELD")
            switch.fire("CHANNEL_HOLD", channel)
        else:
            held_for = now_us() - channel.times.get("last_hold", now_us())
            channel.times["hold_accum"] = channel.times.get("hold_accum", 0) + held_for
            switch.set_callstate(channel, "ACTIVE")
            switch.fire("CHANNEL_UNHOLD", channel)

    def hold_music(self, channel: Channel) -> str | None:
        """``switch_channel_get_hold_music``: temp_hold_music, else hold_music (a channel
        variable, else the global), expanded; None when there is none."""
        for name in ("temp_hold_music", "hold_music"):
            value = channel.get(name)
            if value:
                return self.switch.expand(channel, value)
        return self.switch.globals.get("hold_music") or None

    def hears(self, uuid: str, _depth: int = 0) -> set[str]:
        """Whose audio reaches channel ``uuid``: other channels' uuids, and ``media:<src>``
        for playbacks and hold music. The observable effect of bridge, hold, eavesdrop
        (with its modes), three_way and conference.

        Eavesdrop (switch_ivr_eavesdrop_session): the eavesdropper hears the target's read
        stream (its own voice) and write stream (everything the target hears); with
        ED_MUX_READ the target's bridged peer hears the eavesdropper, with ED_MUX_WRITE the
        target does. A held channel hears nothing from its peer; the peer hears the held
        channel's hold music."""
        me = self.switch.channels.get(uuid)
        if me is None or not me.up:
            return set()
        heard: set[str] = set()
        if me.playing:
            heard.add(f"media:{me.playing}")
        if me.ringback:
            heard.add(f"media:{me.ringback}")
        peer = self.switch.channels.get(me.peer) if me.peer else None
        if peer is not None and peer.up and not me.held:
            if peer.held:
                # a hold within the bridge's lead frames: the music is still queued
                music = None if peer.hold_music_queued else self.hold_music(peer)
                if music:
                    heard.add(f"media:{music}")
            else:
                heard.add(peer.uuid)
        spy = me.eavesdrop
        if spy and _depth < 3:
            target = self.switch.channels.get(spy["target"])
            if target is not None and target.up:
                if spy.get("read", True):
                    heard.add(target.uuid)
                if spy.get("write", True):
                    heard |= self.hears(target.uuid, _depth + 1) - {me.uuid}
        if me.three_way_with:
            target = self.switch.channels.get(me.three_way_with)
            if target is not None and target.up:
                heard.add(target.uuid)
                if target.peer:
                    heard.add(target.peer)
        for other in list(self.switch.channels.values()):
            if other is me or not other.up:
                continue
            spy = other.eavesdrop
            if spy:
                target = self.switch.channels.get(spy["target"])
                if target is not None and target.up:
                    if me.uuid == target.uuid and spy.get("mux_write"):
                        heard.add(other.uuid)
                    if target.peer and me.uuid == target.peer and spy.get("mux_read"):
                        heard.add(other.uuid)
            if other.three_way_with:
                target = self.switch.channels.get(other.three_way_with)
                if target is not None and me.uuid in (target.uuid, target.peer):
                    heard.add(other.uuid)
            if me.conference and other.conference == me.conference:
                heard.add(other.uuid)
        return heard
