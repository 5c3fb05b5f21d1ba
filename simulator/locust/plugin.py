"""syncsim inside Locust: one Locust user class per scenario user class, each user one device.

`install()` (called by the locustfile at import) loads the scenario, registers syncsim's command
line options, event listeners and messages on Locust, and returns the user classes and the rollout
shape for the locustfile's namespace. The parts, one job each:

- bridge.py: the scenario from the command line, the process's role(s), its engine loop, sending;
- coordinator.py: the server, the run's clock, device leases, the end of the run, the report;
- host.py: the devices of this process's users, their Locust entries, their hand-in;
- messages.py: what the two roles tell each other (typed);
- users.py: the Locust user classes and the rollout shape;
- webui.py: the syncsim tab in Locust's web UI.

Only loopback: the embedded server listens on 127.0.0.1 and `--host` must be a loopback URL.
"""

from __future__ import annotations

import sys
from typing import Any

from locust import events

from simulator.locust.bridge import Bridge, load, users_given
from simulator.locust.users import rollout_shape, user_classes


def install(argv: list[str] | None = None) -> dict[str, Any]:
    """Load the scenario and hook syncsim into Locust; the locustfile puts the result in its namespace."""
    argv = sys.argv if argv is None else argv
    path, scenario = load(argv)
    bridge = Bridge(scenario, path, users_given=users_given(argv))
    classes = user_classes(bridge)

    @events.init_command_line_parser.add_listener
    def _options(parser: Any) -> None:
        group = parser.add_argument_group("syncsim")
        group.add_argument("--scenario", help="the syncsim scenario file (required; every worker needs the master's)",
                           env_var="SYNCSIM_SCENARIO")
        group.add_argument("--admin-key", help="admin key of the `syncsim serve` given by --host",
                           env_var="SYNCSIM_ADMIN_KEY")
        group.add_argument("--syncsim-out", default="reports", help="folder for syncsim's reports (default reports)")
        group.add_argument("--syncsim-requests", action="store_true", default=False,
                           help="also put every HTTP request of every device in Locust's statistics")

    events.init.add_listener(bridge.init)
    events.test_start.add_listener(bridge.test_start)
    events.test_stop.add_listener(bridge.test_stop)
    events.quitting.add_listener(bridge.quitting)
    names: dict[str, Any] = {f"{name}_device": cls for name, cls in classes.items()}
    names["RolloutShape"] = rollout_shape(bridge, classes)
    names["syncsim_bridge"] = bridge
    return names
