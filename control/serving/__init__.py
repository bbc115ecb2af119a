"""The HTTP face of the gateway (aiohttp): a thin app (routes and middlewares) over a chat
pipeline that reads parse → admit → route → cache → relay → settle.

- `app.py`        create_app: routes, middlewares, start-up and clean-up; nothing else
- `gateway.py`    the Gateway's parts; `install` swaps a reloaded config in at once
- `chat.py`       POST /v1/chat/completions, one named step each
- `context.py`    what the steps need of a request, without aiohttp (request id, lease, session)
- `parsing.py`    bodies to validated requests and prompt token estimates
- `narrowing.py`  candidates a request cannot use: capabilities, the key, open circuits
- `explain.py`    the decision as headers, span attributes and JSON
- `handlers.py`   /v1/route, /v1/models, health, readiness, metrics
- `middleware.py` OpenAI-shaped errors, request ids, the request counter
- `relay.py`      retries, failover, circuit breakers, streaming; returns what went out
- `workers.py`    serve_forever, `semroute serve`, multi-worker supervision
"""
