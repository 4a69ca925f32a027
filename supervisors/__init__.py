"""Erlang/OTP-style supervision trees for pykka actors.

Children report their own death by message; supervisors restart them per strategy with
backoff on an injectable clock, give up after too many restarts, and escalate to their parent.
"""

from supervisors import inline
from supervisors.actor import ChildBaseException, SupervisedActor
from supervisors.clock import Clock, Timer, VirtualClock, WallClock
from supervisors.context import ChildContext
from supervisors.directory import Directory
from supervisors.intensity import Intensity
from supervisors.messages import ChildExited
from supervisors.spec import Backoff, ChildSpec, Policy, Restart, Strategy
from supervisors.supervisor import Supervisor, SupervisorExhausted
from supervisors.tree import RootHandle, start_tree, supervisor_spec

__all__ = [
    "Backoff",
    "ChildBaseException",
    "ChildContext",
    "ChildExited",
    "ChildSpec",
    "Clock",
    "Directory",
    "Intensity",
    "Policy",
    "Restart",
    "RootHandle",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorExhausted",
    "Timer",
    "VirtualClock",
    "WallClock",
    "inline",
    "start_tree",
    "supervisor_spec",
]
