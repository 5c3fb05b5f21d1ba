"""The injected clock: the only place that reads the time or waits for simulated time.

- `base.Clock`: the protocol (scenario time, work time, sleeps, the conversion between them);
- `real.RealClock`: scenario time `time_scale` times faster than the wall clock, work in real time
  (load against a server: Locust, `--target`, `syncsim run --clock real`); also the generator's own
  wall and CPU time (`wall_s`, `cpu_s`, `sleep_wall`), for its health only;
- `virtual.VirtualClock` on a `VirtualEventLoop`: one simulated time for everything, moving only
  when every task waits (`run_virtual`; the default for `syncsim run`);
- `manual.ManualClock`: tests move time by hand;
- `lived.Timeline`: a device's lived time, on which sync durations are measured;
- `deadline.ReadDeadline`: a read timeout on work time (the device's Link).
"""

from .base import Clock, ClockKind
from .deadline import ReadDeadline
from .lived import Timeline
from .manual import ManualClock
from .real import RealClock, cpu_s, sleep_wall, wall_epoch_s, wall_s
from .virtual import VIRTUAL_START, VirtualClock, VirtualEventLoop, VirtualTimeStalled, run_virtual

__all__ = ["VIRTUAL_START", "Clock", "ClockKind", "ManualClock", "ReadDeadline", "RealClock", "Timeline", "VirtualClock",
           "VirtualEventLoop", "VirtualTimeStalled", "cpu_s", "run_virtual", "sleep_wall", "wall_epoch_s", "wall_s"]
