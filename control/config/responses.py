"""The `responses:` section: the Responses API's store for `previous_response_id`."""
from __future__ import annotations

from pydantic import Field

from control.config.base import Strict


class ResponsesConfig(Strict):
    store: bool = Field(True, description="keep responses (unless a request says store: false) so a later request "
                                          "can continue one with previous_response_id")
    ttl_s: float = Field(30 * 86400, gt=0, description="how long a stored response can be continued")
    path: str | None = Field(None, description="the SQLite file; default <state dir>/responses.sqlite3 "
                                               "($SEMROUTE_STATE_DIR, else $XDG_STATE_HOME/semroute)")
