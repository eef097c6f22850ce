"""Command-line shell: Typer commands that call the core and print tables or JSON."""
