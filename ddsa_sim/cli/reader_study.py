"""``ddsa-sim reader-study RUNS... -o DIR`` and ``ddsa-sim reader-study score CSV...`` (docs/inference.md).

``make`` is the group's default command: a first argument that is not ``make`` or ``score`` is a run.
Bad input ends with one ``error:`` line and exit code 2 (the main app's handler).
"""

# no ``from __future__ import annotations``: typer reads the real annotation objects.
import json
import sys
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from ddsa_sim import InputError
from ddsa_sim.cli.options import OVERWRITE

__all__ = ["make", "register", "score"]


class _MakeByDefault(TyperGroup):
    """A group whose arguments go to ``make`` unless the first names another command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["make", *args]
        return super().parse_args(ctx, args)


study_app = typer.Typer(cls=_MakeByDefault, no_args_is_help=True, add_completion=False,
                        help="Blinded reader study of network vs conventional DSA: make the page, score it. "
                        "`ddsa-sim reader-study RUNS... -o DIR` is `ddsa-sim reader-study make RUNS... -o DIR` "
                        "(make is the default command).")


@study_app.command("make")
def make(
    runs: list[Path] = typer.Argument(..., help="'ddsa-sim infer' output folders of XA runs, one case each"),
    out: Path = typer.Option(..., "-o", "--out", help="study folder: reader_study.html + reader_study_key.json"),
    seed: int | None = typer.Option(None, "--seed", help="seed (0 or more) of case order and sides (default: drawn "
                                    "from the runs, so the same runs give the same study)"),
    overwrite: bool = OVERWRITE,
) -> None:
    """Write one self-contained, blinded HTML page (pairs A/B, scoring form -> CSV) and its key.

    The study (page, key, study id) follows from the runs and the seed: making it again gives the same one.
    """
    from ddsa_sim.angio.reader_study import make_study

    page, key = make_study(runs, out, seed, overwrite)
    print(page)
    print(key)


@study_app.command("score")
def score(
    csv_files: list[Path] = typer.Argument(..., help="readers' CSV files saved from the page"),
    key: Path | None = typer.Option(None, "--key", help="reader_study_key.json (default: beside the first CSV)"),
) -> None:
    """Unblind the scores (writes <csv>_unblinded.csv) and print the summary as one JSON object.

    Score's own *_unblinded.csv files among the CSVs (e.g. from a glob) are skipped, with a note.
    """
    from ddsa_sim.angio.reader_study import KEY_NAME, UNBLINDED_SUFFIX, is_score_output, score_study

    own = [p for p in csv_files if is_score_output(p)]
    readers = [p for p in csv_files if p not in own]
    if not readers:
        raise InputError(f"no readers' CSV given (only score's own *{UNBLINDED_SUFFIX} files)")
    if own:
        print(f"note: skipped {len(own)} file(s) score wrote itself: {', '.join(map(str, own))}", file=sys.stderr)
    key_path = key if key is not None else readers[0].parent / KEY_NAME
    if not key_path.is_file():
        raise InputError(f"{key_path}: key not found (give --key DIR/{KEY_NAME})")
    print(json.dumps(score_study(readers, key_path), indent=1))


def register(app: typer.Typer) -> None:
    """Add the ``reader-study`` group to the main ``ddsa-sim`` app."""
    app.add_typer(study_app, name="reader-study")
