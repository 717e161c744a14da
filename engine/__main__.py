"""``python -m engine serve|reconstruct|info|render-splats``: the engine process and the batch command line.

``serve`` is the request loop Blender talks to (``worker.main``); ``reconstruct``, ``info`` and
``render-splats`` are the
command line (``cli.main``, which receives the whole argument list, sub-command first). Each is imported
only when chosen, so ``python -m engine --help`` stays fast.
"""

from __future__ import annotations

import sys

USAGE = """usage: python -m engine <command> [options]

commands:
  serve         run the engine process that Blender talks to (JSON lines on stdin/stdout)
  reconstruct   reconstruct images or a video into a result bundle (batch command line)
  info          show the engine, torch and device information
  render-splats render a 3D Gaussian PLY from cameras (gsplat's rules; needs gsplat)

Run 'python -m engine <command> --help' for the options of a command."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command = argv[0]
    if command == "serve":
        from .process import worker

        return worker.main(argv[1:])
    if command in ("reconstruct", "info", "render-splats"):
        from . import cli

        return cli.main(argv)
    print(f"python -m engine: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
