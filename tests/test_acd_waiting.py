"""Waiting callers (ext_group announce_seconds / announce, max_wait_seconds / overflow_to,
exit_key / exit_to), end to end on the fake switch: what a waiting caller hears (the
applications run on its channel, their content and cadence, hold music between them), that an
agent turning free wakes it at once even mid-announcement, and that it leaves the queue on the
group's terms - by max wait to another group or an extension, at once when nobody is logged
in, by the exit key to a dialplan target - leaving nothing queued or reserved (the fixture
checks the queues and the offers after every test).

Uses test_acd's call center (its own module-scoped instance) and its own groups 9xx."""

from __future__ import annotations

import time

import pytest

from fakefs import Channel
from fakefs.scenario import wait_until
from fsapps.context import now_ms
from fsapps.domain import waiting
from fsapps.domain.stats import QueueStats
from fsapps.switch import acd, commands
from tests import test_acd
from tests.acd_support import DOMAIN
from tests.test_acd import Acd

# test_acd's fixtures: a call center of this module's own, emptied after each test
center_module = test_acd.center_module
a = test_acd.a

MUSIC = "local_stream://moh"


def executed(acd: Acd, channel: Channel, app: str | None = None,
             event: str = "CHANNEL_EXECUTE") -> list[tuple[float, str, str]]:
    """(time in s, application, data) of each application run on the caller's channel (its
    start; ``event="CHANNEL_EXECUTE_COMPLETE"``: its end), in order."""
    return [(int(e.headers["Event-Date-Timestamp"]) / 1e6, e.headers["Application"],
             e.headers["Application-Data"])
            for e in acd.switch.bus.events(event)
            if e.headers.get("Unique-ID") == channel.uuid
            and (app is None or e.headers["Application"] == app)]


def handled(acd: Acd, group: str, *seconds: int) -> None:
    """Answered calls of the group that ended lately, with these handling times."""
    for s in seconds:
        QueueStats(acd.cc.ctx, DOMAIN).record_handled(group, now_ms(), s * 1000)


def nothing_left(acd: Acd, *extensions: str) -> None:
    for ext in extensions:
        agent = acd.cc.get(ext)
        assert not agent.offer_uuid, f"{ext} still reserved for {agent.offer_uuid}"


# ------------------------------------------------------------------------ pure parts -------
def test_the_estimated_wait_is_position_times_the_average_handling_time_per_agent() -> None:
    assert waiting.estimated_wait_seconds(3, 60_000, 2) == 90
    assert waiting.estimated_wait_seconds(1, 1_001, 1) == 2   # rounded up
    assert waiting.estimated_wait_seconds(1, None, 2) is None  # nothing handled lately
    assert waiting.estimated_wait_seconds(1, 60_000, 0) is None  # nobody logged in
    steps = waiting.parse_announce("")
    assert waiting.announcement(steps, 2, 90) == [
        ("speak", "flite|kal|You are number 2 in the queue."),
        ("speak", "flite|kal|Your estimated wait is about 2 minutes.")]
    # no estimate: the steps naming the wait are left out
    assert waiting.announcement(steps, 4, None) == [
        ("speak", "flite|kal|You are number 4 in the queue.")]
    steps = waiting.parse_announce("say en number pronounced {position};; playback zh/wait.wav;"
                                   " say en TIME_MEASUREMENT pronounced {seconds}")
    assert waiting.announcement(steps, 1, 61) == [
        ("say", "en number pronounced 1"), ("playback", "zh/wait.wav"),
        ("say", "en TIME_MEASUREMENT pronounced 61")]
    assert waiting.announcement(steps, 1, None) == [("say", "en number pronounced 1")]


@pytest.mark.parametrize("bad", ["bridge user/1000", "playback", "speak x|y|{name}",
                                 "playback a.wav;system rm -rf /"])
def test_an_announcement_runs_only_playback_say_and_speak(bad: str) -> None:
    with pytest.raises(ValueError):
        waiting.parse_announce(bad)


def test_destinations_are_plain_names() -> None:
    assert waiting.parse_destination("") == waiting.HANGUP
    assert waiting.parse_destination("group:905") == waiting.Destination("group", "905")
    assert waiting.parse_destination("dialplan:9000,XML,default") == \
        waiting.Destination("dialplan", "9000 XML default")
    assert str(waiting.parse_destination("dialplan:9000,XML,default")) == \
        "dialplan:9000,XML,default"
    for bad in ("group:", "extension:1000,user/2000", "dialplan:{x=y}9000", "voicemail:1",
                "group:9 05", "dialplan:a,b,c,d"):
        with pytest.raises(ValueError):
            waiting.parse_destination(bad)


# ------------------------------------------------------------------------ announcements ----
def test_announcements_tell_the_place_and_the_estimated_wait_every_n_seconds(a: Acd) -> None:
    """announce_seconds 2 with the default announcement: mod_flite says the caller's place
    and the wait estimated from the group's recent handling times (60 s a call, one agent
    logged in: number 2 waits 2 minutes) as soon as it waits, then after every 2 s of hold
    music; the hold music plays between announcements."""
    for text in ("You are number 1 in the queue.", "You are number 2 in the queue.",
                 "Your estimated wait is about 1 minutes.",
                 "Your estimated wait is about 2 minutes."):
        a.switch.media_durations[f"speak://flite|kal|{text}"] = 300
    a.group("901", mode=0, announce_seconds=2)
    a.agents("901", "9011", ready=False)
    handled(a, "901", 50, 60, 70)
    first = a.call("901", "13990100001")
    wait_until(lambda: first.uuid in a.queued("901"), 3, "the first caller queued")
    second = a.call("901", "13990100002")
    wait_until(lambda: len(executed(a, second, "speak")) >= 4, 15, "two announcements")
    speaks = executed(a, second, "speak")
    assert [data for _, _, data in speaks[:4]] == [
        "flite|kal|You are number 2 in the queue.",
        "flite|kal|Your estimated wait is about 2 minutes."] * 2
    ends = executed(a, second, "speak", "CHANNEL_EXECUTE_COMPLETE")
    gap = speaks[2][0] - ends[1][0]
    assert 1.8 <= gap <= 3.2, f"{gap:.2f} s of hold music between the announcements"
    music = [t for t, _, data in executed(a, second, "playback") if data == MUSIC]
    assert any(ends[1][0] <= t <= speaks[2][0] for t in music), "hold music between them"
    assert executed(a, first, "speak")[0][2] == "flite|kal|You are number 1 in the queue."
    a.ready("9011")
    assert a.answered_by(first) == "9011"
    a.gone(first)
    a.wait_state("9011", "ready")
    assert a.answered_by(second) == "9011"
    a.gone(second)


def test_hold_music_that_ends_a_little_early_is_not_followed_by_another_segment(
        a: Acd) -> None:
    """A loaded switch ends a timed segment of hold music a little before the handler's clock
    (it counts the audio it wrote, and writes the frames it owes back to back): the
    announcement due then comes at once, not after the shortest segment the switch plays
    (2 s: seen in the real switch, 4.0 s of music between announcements every 2 s)."""
    text = "You are number 1 in the queue."
    a.switch.media_durations[f"speak://flite|kal|{text}"] = 300
    a.switch.media.timed_early_ms = 150
    try:
        a.group("903", mode=0, announce_seconds=2, announce=f"speak flite|kal|{text}")
        a.agents("903", "9031", ready=False)
        channel = a.call("903", "13990300001")
        wait_until(lambda: len(executed(a, channel, "speak")) >= 3, 15, "three announcements")
        starts = [t for t, _, _ in executed(a, channel, "speak")]
        ends = [t for t, _, _ in executed(a, channel, "speak", "CHANNEL_EXECUTE_COMPLETE")]
        gaps = [start - end for start, end in zip(starts[1:], ends, strict=False)]
        assert all(1.5 <= gap <= 2.5 for gap in gaps), f"{gaps} s of music between them"
    finally:
        a.switch.media.timed_early_ms = 0
    a.ready("9031")
    assert a.answered_by(channel) == "9031"
    a.gone(channel)


def test_configured_files_and_say_without_an_estimate_tell_the_place_only(a: Acd) -> None:
    """Chinese prompts from files, the number said by mod_say (``say zh ...``); with no call
    handled in the last hour there is no estimate, and the sentence naming it is left out
    whole (its recorded words too)."""
    steps = ("playback /sounds/zh/nin_qianmian_haiyou.wav; say zh number pronounced "
             "{position}; playback /sounds/zh/wei.wav;; playback /sounds/zh/yuji_dengdai.wav; "
             "say zh number pronounced {minutes}; playback /sounds/zh/fenzhong.wav")
    for path in ("/sounds/zh/nin_qianmian_haiyou.wav", "/sounds/zh/wei.wav"):
        a.switch.media_durations[path] = 300
    a.group("902", mode=0, announce_seconds=30, announce=steps)
    a.agents("902", "9021", ready=False)
    channel = a.call("902", "13990200001")
    wait_until(lambda: [d for _, _, d in executed(a, channel, "playback")
                        if d == MUSIC], 5, "hold music after the announcement")
    heard = [(app, data) for _, app, data in executed(a, channel)
             if app in ("playback", "say", "speak") and data != MUSIC]
    assert heard == [("playback", "/sounds/zh/nin_qianmian_haiyou.wav"),
                     ("say", "zh number pronounced 1"), ("playback", "/sounds/zh/wei.wav")]
    a.ready("9021")
    assert a.answered_by(channel) == "9021"
    a.gone(channel)


@pytest.mark.parametrize("app", ["playback", "speak"])
def test_an_agent_turning_free_mid_announcement_is_rung_at_once(a: Acd, app: str) -> None:
    """The runtime's break stops an announcement as it stops hold music (uuid_break): the
    caller is rung at once, and the announcement's other steps never start."""
    number = "903" if app == "playback" else "904"
    long_step = (f"playback /sounds/long{number}.wav" if app == "playback"
                 else "speak flite|kal|You are caller {position}.")
    path = (f"/sounds/long{number}.wav" if app == "playback"
            else "speak://flite|kal|You are caller 1.")
    a.switch.media_durations[path] = 10_000
    a.group(number, mode=0, announce_seconds=30,
            announce=f"{long_step}; say en number pronounced {{position}}")
    a.agents(number, f"{number}1", ready=False)
    channel = a.call(number, f"1399{number}0001")
    wait_until(lambda: channel.playing == path, 5, "the announcement playing")
    started = time.monotonic()
    a.ready(f"{number}1")
    assert a.answered_by(channel, 3) == f"{number}1"
    assert time.monotonic() - started < 1.5
    assert executed(a, channel, "say") == []
    a.gone(channel)


# ------------------------------------------------------------------------ leaving ----------
def test_max_wait_overflows_to_another_group(a: Acd) -> None:
    """max_wait_seconds 2, overflow_to group:906: the caller leaves 905's queue after 2 s
    (its agent is logged in but busy) and an agent of 906 answers it; 905's queue and agent
    keep nothing of it."""
    a.group("905", mode=0, max_wait_seconds=2, overflow_to="group:906", welcome_ring="")
    a.group("906", mode=0, welcome_ring="/sounds/welcome906.wav")
    a.agents("905", "9051", ready=False)
    a.agents("906", "9061")
    started = time.monotonic()
    channel = a.call("905", "13990500001")
    assert a.answered_by(channel, 6) == "9061"
    assert 1.9 <= time.monotonic() - started <= 4.5
    a.bus.wait("queue_905", method="nway_queue_remove", uuid=channel.uuid)
    a.gone(channel)
    assert a.queued("905") == [] and a.queued("906") == []
    # the second group's welcome is not played to a caller overflowing into it
    assert not [d for _, _, d in executed(a, channel, "playback") if "welcome906" in d]
    nothing_left(a, "9051", "9061")


def test_max_wait_overflows_to_an_extension(a: Acd) -> None:
    """overflow_to extension:9081: the caller is put through to that agent's phone as
    nway_bridge does (its state tracked: talking, then wrap-up)."""
    a.group("907", mode=0, max_wait_seconds=2, overflow_to="extension:9081")
    a.group("908", mode=0)
    a.agents("907", "9071", ready=False)
    a.agents("908", "9081")
    channel = a.call("907", "13990700001")
    assert a.answered_by(channel, 6) == "9081"
    a.gone(channel)
    a.wait_state("9081", "ready")
    assert a.queued("907") == []
    nothing_left(a, "9071", "9081")


def test_with_a_max_wait_and_nobody_logged_in_the_caller_overflows_at_once(a: Acd) -> None:
    """A group with a max wait that nobody is logged into: the caller does not wait for the
    max wait (60 s) but overflows at once."""
    a.group("909", mode=0, max_wait_seconds=60, overflow_to="group:910")
    a.group("910", mode=0)
    a.agents("910", "9101")
    started = time.monotonic()
    channel = a.call("909", "13990900001")
    assert a.answered_by(channel, 3) == "9101"
    assert time.monotonic() - started < 2.0
    a.gone(channel)


def test_a_caller_left_alone_by_logouts_overflows_within_seconds(a: Acd) -> None:
    """Nobody logged in any more while the caller waits: it overflows within the check's
    period, not after the max wait."""
    a.group("911", mode=0, max_wait_seconds=120, overflow_to="group:912")
    a.group("912", mode=0)
    a.agents("911", "9111", ready=False)
    a.agents("912", "9121")
    channel = a.call("911", "13991100001")
    wait_until(lambda: channel.uuid in a.queued("911"), 3, "the caller queued")
    time.sleep(0.5)
    commands.run("nway_logout 9111", ctx=a.cc.ctx)
    started = time.monotonic()
    assert a.answered_by(channel, 8) == "9121"
    assert time.monotonic() - started < 6.5
    a.gone(channel)


def test_max_wait_without_an_overflow_hangs_up_as_the_long_wait_policy_does(a: Acd) -> None:
    a.group("913", mode=0, max_wait_seconds=2)
    a.agents("913", "9131", ready=False)
    started = time.monotonic()
    channel = a.call("913", "13991300001")
    a.gone(channel, 6)
    assert 1.9 <= time.monotonic() - started <= 4.5
    assert channel.hangup_cause == "NORMAL_CLEARING"
    assert a.queued("913") == []


def test_the_exit_key_takes_the_caller_to_the_dialplan_target(a: Acd) -> None:
    """exit_key 1, exit_to dialplan:7915: the caller presses 1 during the hold music (the
    playback stops at the key: playback_terminators) and is transferred to 7915, which the
    dialplan routes into group 915, whose agent answers. Other keys do nothing."""
    a.group("914", mode=0, exit_key="1", exit_to="dialplan:7915")
    a.group("915", mode=0)
    a.agents("914", "9141", ready=False)
    a.agents("915", "9151")
    channel = a.call("914", "13991400001", dtmf=((800, "5"), (1500, "1")))
    assert a.answered_by(channel, 6) == "9151"
    assert ("transfer", "7915") in [(app, d) for _, app, d in executed(a, channel)]
    a.gone(channel)
    assert a.queued("914") == []
    nothing_left(a, "9141", "9151")


def test_the_exit_key_stops_an_announcement_too(a: Acd) -> None:
    a.switch.media_durations["/sounds/long916.wav"] = 10_000
    a.group("916", mode=0, exit_key="#", exit_to="hangup", announce_seconds=30,
            announce="playback /sounds/long916.wav")
    a.agents("916", "9161", ready=False)
    started = time.monotonic()
    channel = a.call("916", "13991600001", dtmf=((700, "#"),))
    a.gone(channel, 5)
    assert time.monotonic() - started < 3.0
    assert a.queued("916") == []


def test_leaving_releases_an_agent_reserved_for_the_caller_in_that_moment(
        a: Acd, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller presses the exit key just as an agent turns ready and reserves itself for
    it: leaving the queue (one script) releases that agent, who is ready and reserved for
    nothing, and the caller is served in the group it left for."""
    leave_for = acd.Router.leave_for

    def racing(router: acd.Router, to: str, why: str) -> str:
        acd.set_ready(router.ctx, DOMAIN, "9171")
        wait_until(lambda: a.cc.get("9171").offer_uuid == router.call.uuid, 3,
                   "9171 reserved for the caller")
        return leave_for(router, to, why)

    monkeypatch.setattr(acd.Router, "leave_for", racing)
    a.group("917", mode=0, exit_key="1", exit_to="group:918")
    a.group("918", mode=0)
    a.agents("917", "9171", ready=False)
    a.agents("918", "9181")
    channel = a.call("917", "13991700001", dtmf=((700, "1"),))
    assert a.answered_by(channel, 6) == "9181"
    a.gone(channel)
    a.wait_state("9171", "ready")
    assert a.callouts(channel) == ["9181"]  # 9171 was never rung
    nothing_left(a, "9171", "9181")
    assert a.queued("917") == []


# ------------------------------------------------------------------------ configuration ----
def test_waiting_settings_are_set_by_command_and_kept_in_postgresql(a: Acd) -> None:
    ctx = a.cc.ctx
    assert commands.run("nway_add_group 931 0", ctx=ctx).startswith("+OK")
    assert commands.run("nway_set_group_waiting 931 90 group:932 1 dialplan:5000,XML,default",
                        ctx=ctx) == ("+OK group 931 max wait 90 s, overflow to group:932, "
                                     "exit key 1 to dialplan:5000,XML,default\n")
    assert commands.run("nway_set_group_waiting 931 90 voicemail:1", ctx=ctx).startswith("-ERR")
    assert commands.run("nway_set_group_waiting 931 90 hangup x hangup",
                        ctx=ctx).startswith("-ERR")
    assert commands.run("nway_set_group_announce 931 45 playback zh/a.wav; say zh number "
                        "pronounced {position}", ctx=ctx) == (
        "+OK group 931 announces every 45 s: playback zh/a.wav; say zh number pronounced "
        "{position}\n")
    assert commands.run("nway_set_group_announce 931 45 bridge user/1000",
                        ctx=ctx).startswith("-ERR")
    ctx.redis.delete(ctx.keys(DOMAIN).group("931"))
    a.cc.groups.load_into_redis()
    group = a.cc.groups.get("931")
    assert group is not None
    assert (group.max_wait_seconds, group.overflow_to, group.exit_key, group.exit_to,
            group.announce_seconds) == (90, "group:932", "1", "dialplan:5000,XML,default", 45)
    assert commands.run("nway_set_group_waiting 931 0 hangup -", ctx=ctx) == \
        "+OK group 931 max wait 0 s, overflow to hangup, no exit key\n"
