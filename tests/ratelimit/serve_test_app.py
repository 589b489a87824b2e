"""Serve the app with the rate limit test routes: `python -m tests.ratelimit.serve_test_app PORT`.

Settings come from the environment, exactly as for `agentkeep serve`.
"""

from __future__ import annotations

import sys

import uvicorn

from agentkeep.app import create_app
from agentkeep.config import load_settings
from agentkeep.observability.logging import configure_logging
from tests.ratelimit.conftest import add_test_routes


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    add_test_routes(app)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)


if __name__ == "__main__":
    main()
