import sys

from neural_render.cli import main

if __name__ == "__main__":
    sys.exit(main())
