"""Subcommands of the `brain-jepa` CLI; each module exposes `register(subparsers)`."""
