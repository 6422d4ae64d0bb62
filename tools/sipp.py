"""SIPp phones and callers for the real-switch tests and ``make bench-switch`` (Debian package
``sip-tester``).

Each scenario is written from a template with its values filled in (ring time, talk time,
user, ...), so one XML file says exactly what one phone or caller does. Every process is
bounded: ``-m`` calls and a global ``-timeout``; ``wait()`` returns its exit code (0: every
call went as scripted).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from tools.servers import free_sip_port, free_udp_ports

_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="$name">\n'
_SDP = """Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
"""

_REGISTER = """
  <send retrans="500">
    <![CDATA[
      REGISTER sip:$domain SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:$user@$domain>;tag=[pid]reg[call_number]
      To: <sip:$user@$domain>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:$user@127.0.0.1:$contact_port>
      Max-Forwards: 70
      Expires: $expires
      User-Agent: $agent
      Content-Length: 0
    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:$domain SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:$user@$domain>;tag=[pid]reg[call_number]
      To: <sip:$user@$domain>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:$user@127.0.0.1:$contact_port>
      [authentication username=$user password=$password]
      Max-Forwards: 70
      Expires: $expires
      User-Agent: $agent
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""

# In-dialog requests a phone or a caller may get while a call is up: re-INVITEs (hold,
# transfer) are answered, INFO and NOTIFY acknowledged; BYE ends the call.
_TALK_LOOP = """
  <label id="talk"/>
  <recv request="INVITE" optional="true" $bye_wait next="reinvite"/>
  <recv request="INFO" optional="true" $bye_wait next="info"/>
  <recv request="NOTIFY" optional="true" $bye_wait next="info"/>
  <recv request="BYE" $bye_wait next="bye"/>
  <label id="reinvite"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      $sdp
    ]]>
  </send>
  <recv request="ACK" next="talk"/>
  <label id="info"/>
  <send next="talk">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""

_BYE_REPLY = """
  <label id="bye"/>
  <send next="end">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""

_PHONE = """
  <recv request="INVITE" crlf="true"$invite_actions
  <send>
    <![CDATA[
      SIP/2.0 $first_reply
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ph[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  $after_first
"""

_RINGING = """
  <recv request="CANCEL" timeout="$ring_ms" ontimeout="answer" next="cancelled"/>
  <label id="answer"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ph[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      $sdp
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
""" + _TALK_LOOP + _BYE_REPLY + """
  $hangup
  <label id="cancelled"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ph[call_number]
      [last_Call-ID:]
      CSeq: [cseq] INVITE
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK" next="end"/>
  <label id="end"/>
</scenario>
"""

# A phone that hangs up itself after talking: the INVITE's From (with the caller's tag), To and
# Contact are kept, the BYE goes to that Contact from the To (with the tag this phone answered
# with) to the From.
_KEEP_DIALOG = """>
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="peer"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="me"/>
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" check_it="true"
            assign_to="peer_contact"/>
    </action>
  </recv>"""

_PHONE_HANGUP = """
  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
      BYE [$peer_contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$me];tag=[pid]ph[call_number]
      To: [$peer]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" next="end"/>
"""

_REJECTED = """
  <recv request="ACK"/>
</scenario>
"""

# A caller: INVITE (digest auth when a password is given), ringing/early media, then either
# an answer (talk, then BYE) or a final refusal. $cancel_ms > 0 cancels before any answer.
_CALLER_INVITE = """
  <send retrans="500">
    <![CDATA[
      INVITE sip:$number@$domain SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "$caller" <sip:$caller@$domain>;tag=[pid]cl[call_number]
      To: <sip:$number@$domain>
      Call-ID: [call_id]
      CSeq: $cseq INVITE
      Contact: <sip:$caller@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70$auth$headers
      Subject: fsapps test
      $sdp
    ]]>
  </send>
"""

# The ACK of the 407 is part of the first INVITE's transaction: its branch ([branch-3], the
# INVITE's, three messages back). With a new branch the switch retransmits the 407, and one
# arriving after the 200 gives SIPp the 407's To tag for the BYE (481 Call Does Not Exist).
_CALLER_AUTH = _CALLER_INVITE.replace("$auth", "").replace("$cseq", "1") + """
  <recv response="100" optional="true"/>
  <recv response="407" auth="true"/>
  <send>
    <![CDATA[
      ACK sip:$number@$domain SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: "$caller" <sip:$caller@$domain>;tag=[pid]cl[call_number]
      To: <sip:$number@$domain>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
""" + _CALLER_INVITE.replace(
    "$auth", "\n      [authentication username=$caller password=$password]").replace("$cseq", "2")

_CALLER_ANSWERED = """
  <recv response="100" optional="true" $cancel_wait/>
  <recv response="180" optional="true" $cancel_wait/>
  <recv response="183" optional="true" $cancel_wait/>
  $refusals
  <recv response="200" rrs="true" $cancel_wait/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "$caller" <sip:$caller@$domain>;tag=[pid]cl[call_number]
      To: <sip:$number@$domain>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: $cseq ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
""" + _TALK_LOOP + """
  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "$caller" <sip:$caller@$domain>;tag=[pid]cl[call_number]
      To: <sip:$number@$domain>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: [cseq] BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" next="end"/>
""" + _BYE_REPLY + """
  <label id="refused"/>
  <send next="end">
    <![CDATA[
      ACK sip:$number@$domain SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "$caller" <sip:$caller@$domain>;tag=[pid]cl[call_number]
      To: <sip:$number@$domain>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: $cseq ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <label id="cancel"/>
  <send>
    <![CDATA[
      CANCEL sip:$number@$domain SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "$caller" <sip:$caller@$domain>;tag=[pid]cl[call_number]
      To: <sip:$number@$domain>
      Call-ID: [call_id]
      CSeq: $cseq CANCEL
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send next="end">
    <![CDATA[
      ACK sip:$number@$domain SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "$caller" <sip:$caller@$domain>;tag=[pid]cl[call_number]
      To: <sip:$number@$domain>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: $cseq ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <label id="end"/>
</scenario>
"""

# A caller that talks: after its ACK, SIPp's RTP stream plays a u-law WAV from the port its SDP
# offers (rtpstream_audio_port) until the call ends.
_PLAY = """
  <nop><action><exec rtp_stream="$audio,-1,0"/></action></nop>
"""


def write_ulaw_wav(path: Path, seconds: float = 2.0, rate: int = 8000, hz: float = 440.0) -> Path:
    """A tone as G.711 u-law (WAV format 7): what SIPp's rtp_stream sends as payload 0."""
    import math
    import struct

    def ulaw(sample: int) -> int:
        sign = 0x80 if sample < 0 else 0
        sample = min(abs(sample), 32635) + 0x84
        exponent = max(0, sample.bit_length() - 8)
        mantissa = (sample >> (exponent + 3)) & 0x0F
        return ~(sign | (exponent << 4) | mantissa) & 0xFF

    data = bytes(ulaw(int(8000 * math.sin(2 * math.pi * hz * i / rate)))
                 for i in range(int(seconds * rate)))
    fmt = struct.pack("<HHIIHH", 7, 1, rate, rate, 1, 8)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


# Final answers a caller may get instead of 200; each ends the call without failing SIPp.
REFUSALS = (403, 404, 408, 480, 486, 487, 500, 502, 503, 603)


@dataclass
class Sipp:
    """One SIPp process."""

    scenario: str
    args: list[str]
    name: str
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fsapps-sipp-")))
    port: int = field(default_factory=free_sip_port)
    # every message in <name>.msg (the tests read it); a load bench turns it off
    trace_messages: bool = True
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sipp:
        path = self.workdir / f"{self.name}.xml"
        path.write_text(self.scenario)
        cmd = ["sipp", "-sf", str(path), "-i", "127.0.0.1", "-p", str(self.port),
               "-mp", str(free_udp_ports(4)), "-nostdin",
               "-trace_err", "-error_file", str(self.workdir / f"{self.name}.err"),
               *(["-trace_msg", "-message_file", str(self.workdir / f"{self.name}.msg")]
                 if self.trace_messages else []),
               *self.args]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def messages(self) -> str:
        path = self.workdir / f"{self.name}.msg"
        return path.read_text(errors="replace") if path.exists() else ""

    def errors(self) -> str:
        path = self.workdir / f"{self.name}.err"
        return path.read_text(errors="replace") if path.exists() else ""


def _fill(template: str, **values: object) -> str:
    return Template(template).safe_substitute({k: str(v) for k, v in values.items()})


def register(target_port: int, user: str, password: str, domain: str, contact_port: int,
             expires: int = 3600, agent: str = "fsapps-test-phone") -> Sipp:
    """REGISTER ``user@domain`` (digest) with its contact at ``contact_port``; one call."""
    body = _fill(_HEAD + _REGISTER, name="register", user=user, password=password,
                 domain=domain, contact_port=contact_port, expires=expires, agent=agent)
    return Sipp(body, [f"127.0.0.1:{target_port}", "-m", "1", "-timeout", "15s",
                       "-timeout_error", "-recv_timeout", "10000"],
                f"register-{user}").start()


def register_many(target_port: int, users: Sequence[str], password: str, domain: str,
                  contact_port: int, at_once: int = 25, expires: int = 3600,
                  agent: str = "fsapps-bench-phone") -> list[str]:
    """REGISTER every user of ``users`` (digest, one password) with its contact at
    ``contact_port``, ``at_once`` SIPp processes at a time (SIPp 3.6 takes no digest
    username from an injection file: one process per user). Returns the users whose
    registration failed."""
    failed: list[str] = []
    for attempt in range(3):  # a REGISTER lost on a loaded machine is tried again
        todo, failed = list(failed if attempt else users), []
        for first in range(0, len(todo), at_once):
            batch = [(user, register(target_port, user, password, domain, contact_port,
                                     expires=expires, agent=agent))
                     for user in todo[first:first + at_once]]
            for user, proc in batch:
                if proc.wait(30) != 0:
                    failed.append(user)
                shutil.rmtree(proc.workdir, ignore_errors=True)
        if not failed:
            break
    return failed


def register_blind(target_port: int, users: Sequence[str], domain: str, contact_port: int,
                   rate: int = 200, expires: int = 3600,
                   agent: str = "fsapps-bench-phone") -> Sipp:
    """REGISTER every user of ``users`` without a digest (the switch must accept them blind:
    sofia's ``accept-blind-reg``), ``rate`` per second from one SIPp process."""
    unchallenged = _REGISTER[:_REGISTER.index('  <recv response="401"')]
    body = _fill(_HEAD + unchallenged + '  <recv response="200"/>\n</scenario>\n',
                 name="register", user="[field0]", domain=domain, contact_port=contact_port,
                 expires=expires, agent=agent)
    proc = Sipp(body, [], "register-blind")
    users_file = proc.workdir / "users.csv"
    users_file.write_text("SEQUENTIAL\n" + "".join(f"{user};\n" for user in users))
    proc.args = [f"127.0.0.1:{target_port}", "-inf", str(users_file), "-m", str(len(users)),
                 "-r", str(rate), "-l", str(rate), "-timeout", "120s", "-timeout_error",
                 "-recv_timeout", "10000"]
    return proc.start()


def phone(ring_ms: int = 300, answer: bool = True, busy: bool = False,
          calls: int = 1000, timeout_s: int = 600, port: int = 0,
          hangup_after_ms: int = 0, trace_messages: bool = True,
          starved_ok: bool = False) -> Sipp:
    """A phone's UAS: rings ``ring_ms`` then answers (or rings until cancelled, or answers
    486 busy); a call ends when the other side sends BYE (or CANCEL while ringing), or with
    ``hangup_after_ms`` when the phone hangs up that long after answering. It answers any
    INVITE: several users registered with this one contact make it a room of phones.
    ``starved_ok``: SIPp keeps going however often a saturated machine leaves it without the
    CPU for over 500 ms (by default its watchdog ends it after 120 such trips in 10 minutes:
    the bench's agents, one SIPp for a quarter of an hour beside a switch at full load, died
    so mid-run and every call after rang no one)."""
    if busy:
        first, after = "486 Busy Here", _REJECTED
    else:
        first, after = "180 Ringing", _RINGING
    ring = ring_ms if answer else 3_600_000
    body = _fill(_HEAD + _PHONE, name="phone", first_reply=first, after_first=after,
                 invite_actions=_KEEP_DIALOG if hangup_after_ms else "/>")
    bye_wait = f'timeout="{hangup_after_ms}" ontimeout="hangup"' if hangup_after_ms else ""
    body = _fill(body, ring_ms=ring, sdp=_SDP, bye_wait=bye_wait,
                 hangup=_PHONE_HANGUP if hangup_after_ms else "")
    starved = ["-watchdog_minor_maxtriggers", "1000000000",
               "-watchdog_major_maxtriggers", "1000000000"] if starved_ok else []
    uas = Sipp(body, ["-m", str(calls), "-timeout", f"{timeout_s}s", *starved], "phone",
               trace_messages=trace_messages)
    if port:
        uas.port = port
    return uas.start()


def caller(target_port: int, number: str, caller_number: str, talk_ms: int = 1000,
           domain: str = "127.0.0.1", password: str = "", cancel_ms: int = 0,
           headers: str = "", calls: int = 1, rate: float = 1.0, timeout_s: int = 120,
           hold_ms: int = 0, limit: int = 500, extra_args: Sequence[str] = (),
           trace_messages: bool = True, audio: str = "") -> Sipp:
    """Callers dialling ``number``: talk ``talk_ms`` after the answer then BYE (or take the far
    end's BYE); ``cancel_ms`` > 0 cancels after that long unanswered. With ``password`` the
    INVITE answers the switch's digest challenge as phone ``caller_number``. ``limit``: at most
    that many calls at once; ``extra_args`` go to SIPp as they are (e.g. ``-inf`` with
    ``[field0]`` in ``number``). ``audio``: a u-law WAV (:func:`write_ulaw_wav`) the caller
    plays, looped, from its answer on."""
    # SIPp waits at the first of a run of optional <recv>s: each carries the timeout
    cancel_wait = f'timeout="{cancel_ms}" ontimeout="cancel"' if cancel_ms else ""
    refusals = "\n  ".join(f'<recv response="{code}" optional="true" {cancel_wait} '
                           'next="refused"/>' for code in REFUSALS)
    invite = _CALLER_AUTH if password else _CALLER_INVITE.replace("$auth", "").replace(
        "$cseq", "1")
    answered = _CALLER_ANSWERED
    if audio:
        after_ack = answered.index("  </send>\n") + len("  </send>\n")
        answered = answered[:after_ack] + _PLAY + answered[after_ack:]
    body = _HEAD + invite + answered
    body = _fill(body, name="caller", refusals=refusals, cancel_wait=cancel_wait,
                 cseq="2" if password else "1", bye_wait=f'timeout="{talk_ms}" '
                 'ontimeout="hangup"')
    extra = "".join(f"\n      {line.strip()}" for line in headers.splitlines() if line.strip())
    body = _fill(body, number=number, caller=caller_number, domain=domain, password=password,
                 headers=extra, audio=audio,
                 sdp=_SDP.replace("[media_port]", "[rtpstream_audio_port]") if audio else _SDP)
    return Sipp(body, [f"127.0.0.1:{target_port}", "-m", str(calls), "-r", str(rate),
                       "-timeout", f"{timeout_s}s", "-timeout_error", "-l", str(limit),
                       *extra_args],
                f"caller-{caller_number}", trace_messages=trace_messages).start()
