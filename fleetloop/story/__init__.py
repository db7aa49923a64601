"""The scripted demo story: a simulated fleet, a real mosquitto, the real hub and agents, on a compressed clock.

healthy operation (an operator re-takes v1's drift reference from it) → a bad sensor recalibration on one site →
the hub detects fleet drift and locates the drifted devices → simulated technicians label (with delay and noise)
→ the hub retrains and gates → an operator rolls the candidate out through the API
(canary, then the fleet) → a flipped-label candidate is rejected by the gate → a candidate that gives NaN on
gateways is rolled back during its canary. `fleetloop demo` runs it (`play`); tests may reuse the pieces.

Modules, one concern each:

- `profile`: phase lengths and every setting the compressed clock needs, with why;
- `wiring`: the hub in this process (`HubRig`: `HubService` + API thread + extra jobs);
- the agents' SQLite logs are `fleetloop.fleet.logs` (`AgentLogs`); `fleetloop.technicians` annotates at the machines;
- `faults`: the flipped-label retrain and the NaN candidate;
- `operator`: operator actions through the HTTP API;
- `script`: the phases (`Story`), `timeline`: what happened when;
- `metrics`: recall and false alarms over time, loop vs frozen v1; `report`: the HTML report and plots;
- `console`: live progress and the final table; `session`: one run end to end (`play`).
"""

from fleetloop.story.profile import PROFILES, StoryProfile
from fleetloop.story.session import StoryOptions, default_workdir, play

__all__ = ["PROFILES", "StoryOptions", "StoryProfile", "default_workdir", "play"]
