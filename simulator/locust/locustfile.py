"""The locustfile: `locust -f simulator/locust/locustfile.py --scenario scenarios/smoke.yaml`.

Each scenario user class becomes a Locust user class of the same name (each user one device), the
scenario's rollout waves become the load shape, and syncsim's report is written at test stop
(docs/locust.md).
"""

from simulator.locust.plugin import install

globals().update(install())
