"""``python -m fastlookup``: the same command line as the ``fastlookup`` script."""

from fastlookup.cli import main

if __name__ == "__main__":
    main(prog_name="fastlookup")
