"""The commands of ``symflop``, one module per group: each adds its subcommands' parsers
and does their work; ``symflop.cli`` registers them in the order ``--help`` lists them."""
