"""fakefs — a faithful, programmable fake of FreeSWITCH + mod_python3 for fsapps' tests, demo
and benchmarks. See ``Switch`` (one node), ``Behaviour`` (what a far end does) and
``scenario.CallCenter`` (several switches, agents, calls, waiting on conditions)."""

from fakefs.channel import Behaviour, Channel
from fakefs.fsmodule import install
from fakefs.modpython import SwitchCrashed
from fakefs.switch import Switch

install()

__all__ = ["Behaviour", "Channel", "Switch", "SwitchCrashed", "install"]
