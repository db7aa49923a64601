"""A fleet of simulated agents, one process each, watched from the hub's side of the broker.

`plan` deals devices into cohorts and writes their settings; `processes` runs one ``fleetloop agent run``
per device; `monitor` tallies what they publish as ``hub``; `report` supervises a run and sums it up.
"""

from fleetloop.fleet.monitor import WATCHED, DeviceTally, FleetMonitor, FleetSnapshot
from fleetloop.fleet.plan import DeviceSpec, DriftPlan, FleetSettings, agent_config, plan_fleet, to_toml
from fleetloop.fleet.processes import PASSWORD_ENV, STOP_TIMEOUT_S, AgentProcess, Fleet
from fleetloop.fleet.report import FleetReport, sigterm_as_interrupt, supervise

__all__ = [
    "PASSWORD_ENV", "STOP_TIMEOUT_S", "WATCHED", "AgentProcess", "DeviceSpec", "DeviceTally", "DriftPlan", "Fleet",
    "FleetMonitor", "FleetReport", "FleetSettings", "FleetSnapshot", "agent_config", "plan_fleet",
    "sigterm_as_interrupt", "supervise", "to_toml",
]
