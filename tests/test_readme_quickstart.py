"""The README lists every environment variable examples/quickstart/run.sh reads, with its default."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*path):
    with open(os.path.join(REPO, *path), encoding="utf-8") as handle:
        return handle.read()


def test_every_quickstart_knob_is_in_the_readme():
    script = _read("examples", "quickstart", "run.sh")
    knobs = dict(re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", script))  # ${NAME:-default}
    assert {"FOLDS", "FRACTIONS", "PRETRAIN_UPDATES", "SEED"} <= set(knobs)
    readme = _read("README.md")
    section = readme[readme.index("### Quickstart knobs"):]
    section = section[:section.index("\n## ")]
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]*) \|", section, re.MULTILINE))
    assert set(rows) == set(knobs), "README's quickstart knobs differ from the variables run.sh reads"
    for name, default in knobs.items():
        if default:
            assert rows[name].strip() == f"`{default.replace('$PWD/', './')}`", name
