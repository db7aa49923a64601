"""The I/O around the pure rollout machine (`hub.rollout`): plan, persist, gather evidence, carry decisions out.

`RolloutService.start` plans a rollout over the device registry (cohorts), stores it and assigns the first
stage; `tick(now)` builds each stage device's `Evidence` from the hub store (`hub.rollout.reports`), asks
`next_step` and carries the decision out; `pause`, `resume`, `promote`, `rollback` and `abort` do the same for an
operator; `revert` rolls the version the last completed rollout replaced out again, `retry` a candidate rolled
back because devices could not fetch it (`hub.rollout.revert`). Carrying a decision out means, in this order:
store the new state (guarded by a revision, with a hub
event), move the registry status of the candidate (and retire the old active version on completion) with an
audit row holding the decision's numbers (`hub.rollout.records`), then publish: a RETAINED `Assign` (QoS 1) per
device, and for a rollback the ``cmd`` ``rollback`` to the devices known to serve the candidate, followed by the
incumbent's retained `Assign`.

Late joiners: each tick also assigns the registry's active version (retained) to every online device that no
running rollout speaks for and that reports another version (`hub.rollout.stragglers`): a device that came
online after a rollout completed, or one that booted an old model. Presence and versions come from the
devices' retained status messages in the device registry. An assignment is re-sent to a device that still
reports another version only every `resync_s`, under the same msg_id.

Signed assignments: every `Assign` is signed for its device with the hub key, with a per-device counter that
only grows (persisted in the store), an expiry `assign_ttl_s` ahead (re-published every `resync_s`, so a
retained one never expires while the hub runs) and ``rollback`` set when it sends a device back to the
incumbent; agents refuse an assignment that is unsigned, expired or older than one they accepted.

Restart safety: state is stored before anything is published, and retained assignments are idempotent on the
agent, so `resync()` (call it at start-up; `tick` calls it after a publish the client could not take, and every
`resync_s`) re-publishes what the newest rollout says each device should serve, under the same msg_id.
"""

from hub.rollout.records import Rollout
from hub.rollout.service.rollouts import (
    AssignmentPublisher,
    RegistryError,
    RolloutConflict,
    RolloutNotFound,
    RolloutService,
)

__all__ = [
    "AssignmentPublisher",
    "RegistryError",
    "Rollout",
    "RolloutConflict",
    "RolloutNotFound",
    "RolloutService",
]
