"""One module per `python -m deploy` command, named as the command: NAME, HELP,
add_arguments(parser), run(ctx, args) -> exit code. deploy/cli.py registers them."""
