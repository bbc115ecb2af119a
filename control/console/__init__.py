"""The console: `GET /ui`, a page served by the gateway itself (no CDN, no build step).

- `ring`: a bounded ring of decision summaries (no prompt text unless SEMROUTE_LOG_PROMPTS=1),
  shared by all workers through files in the metrics multiprocess directory.
- `summary`: one decision and its outcome as such a summary.
- `series`: per-backend time series sampled from the Prometheus metrics.
- `health`: per-backend circuit state, rolling latency, error rate and last error.
- `web`: the page, its assets (`static/`) and the JSON/SSE endpoints under /ui/api.
"""
