"""``python -m modelkeep`` runs the ``mk`` command."""

from modelkeep.cli.main import run

if __name__ == "__main__":
    run()
