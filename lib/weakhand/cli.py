"""Command-line entry point (placeholder, replaced below)."""


def main() -> None:  # pragma: no cover
    raise SystemExit("weakhand: CLI not built yet")
