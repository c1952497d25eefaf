"""The launcher: where hardware knowledge lives; it plans, starts and supervises the engines.

`python -m serving up` reads the machine, turns it into a vLLM command, starts vLLM (and,
unless turned off, a small embedding engine beside it), serves the sidecar in front of them,
and stops it all cleanly on SIGTERM. Nothing here handles a request: that is the sidecar's job
(``serving.sidecar``), which the launcher only starts and drains.

The modules in the order a reader needs them:

- ``up``: `serving up` from top to bottom: the plans, the first API key, the engines, the
  sidecar (in this process or as workers), the ready banner, the drain on SIGTERM.
- ``hardware``: what the machine has (GPUs through NVML, CPUs, memory); never raises.
- ``plan/``: a pure function from (hardware, engine settings) to a frozen ``EnginePlan``
  (the exact vLLM argv and environment, and the memory and concurrency figures behind it),
  or ``PlanRefused`` with what would fit; see its own docstring.
- ``embedding_plan``: the companion embedding engine's command.
- ``smoke_cache``: housekeeping of the shared smoke-checkpoint cache (CPU hosts).
- ``process``: supervises one engine process (``EngineJob`` says what to run): log file,
  readiness, restarts with backoff, stopping its whole process group.
- ``workers``: the sidecar as N SO_REUSEPORT worker processes when one is not enough, and
  the Prometheus metrics port.
- ``console``: what `serving up` shows a person (phases, one progress line, the banner);
  the rest goes to the log files.
- ``cli`` and ``doctor``: `python -m serving plan` and `python -m serving doctor`, the plan
  and the hardware report without starting anything.
- ``replicas`` and ``router_config``: `serving up --replicas N`, N launchers on one host
  behind HAProxy (its config rendered by a pure function), with Redis sharing the limits.
"""
