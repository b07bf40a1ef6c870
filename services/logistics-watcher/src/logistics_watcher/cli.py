"""`logistics-watcher serve | migrate | keys create/list/revoke`."""

from pathlib import Path

from aftersales_shared.cli import make_main

from .config import Settings

main = make_main(Settings, "logistics_watcher.main:create_app", Path(__file__).resolve().parent)

if __name__ == "__main__":
    raise SystemExit(main(None))
