"""Similarity at class scale, side by side in one run: `cnnkit similarity` (autograder.similarity)
against copydetect's own CopyDetector on the same class of a1_convolution submissions.

The class: N students in nbgrader's layout, each the notebook of one of the independently written
a1 students (autograder/students/a1_convolution/) with its functions disguised (every name it
binds renamed, reformatted, comments and docstrings dropped, in reverse order) by a seed of its
own. Every two students of one style are therefore a copied pair: a worst case, since every such
pair passes the quick filter and is compared in full and reported.

- cnnkit: from the submissions folder to similarity.json and similarity.html written (reading
  the notebooks, the kit's reference modules and the solution included), wall seconds.
- copydetect: the same students' code as one .py file each (their answer cells), compared
  all-against-all by `CopyDetector(test_dirs=[...]).run()` with its default thresholds, then its
  HTML report; wall seconds. It compares files as given: no notebooks, no release lines taken
  out, no kit or solution.

    python benchmarks/bench_similarity.py [--students 300] [--keep DIR]

The target: 300 a1 submissions in under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import nbformat
from copydetect import CopyDetector

from autograder.collect import find_submissions
from autograder.release import SOLUTIONS
from autograder.similarity import compare_batch, write_reports
from autograder.synthetic import defined_functions, disguised_notebook, independent

ASSIGNMENT = "a1_convolution"
KIT = Path(__file__).resolve().parents[1]


def make_class(dest: Path, students: int) -> tuple[Path, Path]:
    """The class's notebooks under dest/subs and each student's answer code under dest/py."""
    release = nbformat.read(KIT / "assignments" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    graded = frozenset(defined_functions(release).values())
    styles = list(independent(ASSIGNMENT).items())
    subs, py = dest / "subs", dest / "py"
    py.mkdir(parents=True)
    for i in range(students):
        style, nb = styles[i % len(styles)]
        student = f"s{i:03d}-{style}"
        made = disguised_notebook(nb, {}, graded, seed=i)
        folder = subs / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(made, folder / f"{ASSIGNMENT}.ipynb")
        cells = [c.source for c in made.cells if c.metadata.get("nbgrader", {}).get("solution")]
        code = [c for c in cells if "def " in c]
        (py / f"{student}.py").write_text("\n\n".join(code))
    return subs, py


def time_kit(subs: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    release = KIT / "assignments" / ASSIGNMENT
    found = find_submissions(subs, ASSIGNMENT, [f"{ASSIGNMENT}.ipynb"], out / ".extracted")
    docs, pairs = compare_batch(found, SOLUTIONS / ASSIGNMENT, release)
    write_reports(out, ASSIGNMENT, docs, pairs)
    return time.perf_counter() - start, len(pairs)


def time_copydetect(py: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    detector = CopyDetector(
        test_dirs=[str(py)],
        extensions=["py"],
        silent=True,
        autoopen=False,
        out_file=str(out / "copydetect.html"),
    )
    detector.run()
    detector.generate_html_report()
    return time.perf_counter() - start, len(detector.get_copied_code_list())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--keep", help="keep the class and the reports in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnkit-bench-sim-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        subs, py = make_class(root, args.students)
        kit_s, kit_pairs = time_kit(subs, root / "kit")
        cd_s, cd_pairs = time_copydetect(py, root)
    cpu = platform.processor() or platform.machine()
    print(f"{args.students} a1 submissions, {os.cpu_count()} cores ({cpu})")
    print(f"{'':28s} {'seconds':>8s} {'pairs reported':>15s}")
    print(f"{'cnnkit similarity':28s} {kit_s:8.1f} {kit_pairs:15d}")
    print(f"{'copydetect CopyDetector':28s} {cd_s:8.1f} {cd_pairs:15d}")
    print(f"target: under 60 s for 300 submissions: {'met' if kit_s < 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
