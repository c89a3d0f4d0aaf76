"""Give a freshly trained model folder another folder's slide rule and stain table.

    python training/splice_rule.py FROM/model.toml TO/model.toml

train.py's `--rule-from` (model2_finetune.sh passes the starting folder) keeps that
folder's [aggregation] and [rule] and drops its [stain] table. A candidate started from
an older folder (2.19.0 and 2.20.0 started from 2.9.0) is read with the bundled rule
instead: this replaces TO's tables from [aggregation] up to [ood] with FROM's, and puts
FROM's [stain] table (with the comment lines just above it) at the end of TO, replacing
any TO has. The ONNX, [input], [output] and [ood] of TO are untouched, so its sha256
still holds; refit the thresholds afterwards (training/candidate_check.sh does).
"""

import sys
from pathlib import Path


def rule_span(lines: list[str], name: str) -> tuple[int, int]:
    """Lines [aggregation] .. the line before [ood]."""
    try:
        return lines.index("[aggregation]"), lines.index("[ood]")
    except ValueError:
        raise SystemExit(f"{name}: needs an [aggregation] and an [ood] table")


def stain_block(lines: list[str]) -> tuple[int, int] | None:
    """The [stain] table with the comment lines just above it, to the next table or the end."""
    if "[stain]" not in lines:
        return None
    start = end = lines.index("[stain]")
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    end += 1
    while end < len(lines) and not lines[end].startswith("["):
        end += 1
    return start, end


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    a = src.read_text().split("\n")
    b = dst.read_text().split("\n")
    ai, aj = rule_span(a, str(src))
    bi, bj = rule_span(b, str(dst))
    out = b[:bi] + a[ai:aj] + b[bj:]
    old = stain_block(out)
    if old is not None:
        out = out[: old[0]] + out[old[1]:]
    new = stain_block(a)
    if new is not None:
        while out and out[-1] == "":
            out.pop()
        out += a[new[0]: new[1]]
    dst.write_text("\n".join(out).rstrip("\n") + "\n")
    print(f"{dst}: [aggregation], [rule]{' and [stain]' if new else ''} from {src}")


if __name__ == "__main__":
    main()
