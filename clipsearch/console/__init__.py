"""What the command line needs besides its commands' declarations (cli.py): one-line errors, output, schedules."""
