"""CLI command groups: each module registers its subcommands and keeps heavy imports inside handlers."""
