"""`python -m creatio_attach` runs the command line, exactly like the `creatio-attach` script."""

from creatio_attach.cli import main

if __name__ == "__main__":
    main()
