"""The sidecar: the FastAPI app in front of vLLM (auth, limits, health, metrics).

Read in this order: `app` (create_app: builds the services, mounts the protocol routers),
`state` (the typed state: `Services`, `SidecarControl` for the launcher, `RequestState`),
`middleware` (request id, size limit, metrics, access log) and `body_guard`, `auth` (key,
permission, backpressure, admission: four steps behind one dependency), `interface` (the
`Call` protocol code gets; the only module of this package that `serving.protocols`
imports), `health` (/health,
/live, /ready, /metrics), then `keys`, `limits`/`host_limits`, `load`, `metrics`,
`engine_state` and `worker` (one process of several, SERVING_WORKERS). The wire to vLLM is
`serving.upstream`.
"""
