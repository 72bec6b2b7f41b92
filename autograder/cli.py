"""The `cnnkit` command line.

cnnkit demo          release an assignment into a temporary course, grade a synthetic class
cnnkit check         check every layer on built-in data and show what the kit computes
cnnkit zoo [NAME]    a classic architecture's per-layer table (no NAME: list them)
cnnkit train         train a named architecture and save its history
cnnkit release       generate student versions of assignments and prove them
cnnkit grade         grade a class's submissions of one assignment
cnnkit feedback      write the students' feedback again with the graders' marks and comments
cnnkit validate      before submitting: what the grader would flag, and which tests fail
cnnkit export        an assignment's totals for Canvas, Moodle or as CSV
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def check(args: argparse.Namespace) -> int:
    """Check every op (fast path against loops and numerical gradients), show a network's
    arithmetic and time a convolution. Returns the exit status: 1 if any op fails."""
    from cnn_core import functional, naive, selfcheck, zoo

    print(
        "Every layer: fast path against the naive loops, and its backward against numerical "
        "gradients (float64)\n"
    )
    results = selfcheck.run(seed=args.seed)
    print(selfcheck.format_results(results))
    print(f"\n{zoo.summary('lenet5')}\n")
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    w = (0.1 * rng.standard_normal((32, 3, 3, 3))).astype(np.float32)
    b = np.zeros(32, np.float32)
    fast_ms = _time_conv(functional, x, w, b, repeat=5)
    loop_ms = _time_conv(naive, x[:1], w, b, repeat=1) * len(x)
    print(
        f"conv2d forward + backward, 64x3x32x32, 32 3x3 filters, padding 1, float32: "
        f"fast path {fast_ms:.1f} ms, naive loops {loop_ms / 1e3:.1f} s "
        f"({loop_ms / fast_ms:,.0f}x slower)"
    )
    failed = [r.op for r in results if not r.passed]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    print(f"\nall {len(results)} ops pass")
    return 0


def _time_conv(module, x, w, b, repeat: int) -> float:
    """Best wall time of `module`'s conv2d forward + backward, in milliseconds."""
    best = float("inf")
    for _ in range(repeat + 1):  # the first call may compile kernels
        t0 = time.perf_counter()
        out, cache = module.conv2d_forward(x, w, b, padding=1)
        module.conv2d_backward(np.ones_like(out), cache)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def zoo_table(args: argparse.Namespace) -> int:
    """Print one architecture's summary, or the known names."""
    from cnn_core import zoo

    if args.name is None:
        print("\n".join(zoo.NAMES))
        return 0
    try:
        print(zoo.summary(args.name, expand=args.expand))
    except ValueError as err:
        print(f"cnnkit zoo: {err}", file=sys.stderr)
        return 2
    return 0


def train(args: argparse.Namespace) -> int:
    """Train a named architecture and write history.json and curves.png into --out."""

    from cnn_core import nn, optim
    from cnn_core.data import Augmentation, load_dataset
    from cnn_core.plot import plot_history
    from cnn_core.train import fit

    out = Path(args.out)
    targets = [out / "history.json", out / "curves.png", out / "model.npz"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        print(
            f"cnnkit train: {', '.join(existing)} exist; pass --force to replace them",
            file=sys.stderr,
        )
        return 2
    try:
        data = load_dataset(args.data, args.data_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"cnnkit train: {err}", file=sys.stderr)
        return 2
    model = nn.build(args.arch, rng=np.random.default_rng(args.seed))
    opt_args = {"lr": args.lr, "weight_decay": args.weight_decay}
    optimizer = optim.make_optimizer(model.parameters(), args.optimizer, **opt_args)
    schedule = optim.make_schedule(optimizer, args.schedule, **_schedule_args(args))
    augmentation = Augmentation(
        crop_padding=args.crop_padding, flip=args.flip, jitter=args.jitter, degrees=args.degrees
    )
    print(
        f"training {args.arch} ({model.n_params():,} parameters) on {data.name} "
        f"({len(data.y_train):,} training images) for {args.epochs} epochs"
    )
    history = fit(
        model,
        data,
        optimizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        schedule=schedule,
        augmentation=augmentation,
        seed=args.seed,
        val_fraction=args.val_fraction,
        architecture=args.arch,
        progress=not args.quiet,
    )
    out.mkdir(parents=True, exist_ok=True)
    history.save(targets[0], overwrite=True)
    plot_history(history).savefig(targets[1], dpi=120)
    model.save(targets[2], overwrite=True)
    test = history.test or {}
    print(
        f"validation accuracy {history.val_accuracy[-1]:.4f}, test accuracy "
        f"{test.get('accuracy', float('nan')):.4f}, {history.wall_time[-1]:.1f} s"
    )
    print(f"wrote {', '.join(map(str, targets))}")
    return 0


def _schedule_args(args: argparse.Namespace) -> dict:
    """Keyword arguments of the chosen schedule from the command line."""
    if args.schedule == "step":
        return {"step_size": args.step_size, "gamma": args.gamma}
    if args.schedule == "cosine":
        return {"t_max": args.epochs}
    if args.schedule == "plateau":
        return {"factor": args.gamma, "patience": 2}
    return {}


def _add_train_parser(sub) -> None:
    from cnn_core.data import DATASET_NAMES
    from cnn_core.nn import ARCHITECTURES

    p = sub.add_parser("train", help="train a CNN on Fashion-MNIST and write history.json")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="lenet")
    p.add_argument("--data", choices=DATASET_NAMES, default="fashion-mnist-subset")
    p.add_argument("--data-dir", help="folder of the full Fashion-MNIST IDX files")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--optimizer", choices=["sgd", "momentum", "nesterov", "adam"], default="momentum"
    )
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", choices=["step", "cosine", "plateau"])
    p.add_argument("--step-size", type=int, default=5, help="epochs between step decays")
    p.add_argument("--gamma", type=float, default=0.1, help="decay factor of step/plateau")
    p.add_argument("--crop-padding", type=int, default=0, help="random crop with this padding")
    p.add_argument("--flip", action="store_true", help="random horizontal flips")
    p.add_argument("--jitter", type=float, default=0.0, help="brightness/contrast jitter")
    p.add_argument("--degrees", type=float, default=0.0, help="random rotation range")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="run", help="folder for history.json, curves.png, model.npz")
    p.add_argument("--force", action="store_true", help="replace files already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=train)


def release_cmd(args: argparse.Namespace) -> int:
    """Release each named assignment (or all), proving every pair; stop at the first failure."""
    from autograder.release import ReleaseError, assignment_names, release

    names = assignment_names() if args.assignment == ["all"] else args.assignment
    course = Path(args.course) if args.course else None
    for name in names:
        try:
            out = release(name, course, force=args.force, prove_pair=not args.no_proof)
        except ReleaseError as err:
            print(f"cnnkit release: {name}: {err}", file=sys.stderr)
            return 1
        proof = "not proven (--no-proof)" if args.no_proof else "proven against the source"
        print(f"{name}: released to {out}, {proof}")
    if course is not None:
        from autograder.gradebook import strip_hidden_tests_from_feedback
        from autograder.secret import course_secret

        course_secret(course)  # the course's hidden cases are its own from the first release
        notice = strip_hidden_tests_from_feedback(course)
        if notice:
            print(notice)
    return 0


def grade_cmd(args: argparse.Namespace) -> int:
    """Grade one assignment's submissions; print the summary and where the files are."""
    from autograder.collect import SubmissionsError
    from autograder.grade import GradeError, grade
    from autograder.release import ReleaseError
    from autograder.sandbox import Limits

    try:
        limits = Limits(
            timeout=args.timeout,
            cell_timeout=args.cell_timeout,
            memory_mb=args.memory_mb,
            max_output_mb=args.max_output_mb,
            max_processes=args.max_processes,
            case_timeout=args.case_timeout,
            disk_mb=args.disk_mb,
        )
        batch = grade(
            args.assignment,
            Path(args.submissions),
            Path(args.course),
            Path(args.out) if args.out else None,
            args.workers,
            limits,
            args.force,
            progress=not args.quiet,
            scheduler=args.scheduler,
            similarity=not args.no_similarity,
            against=[Path(a) for a in args.against],
        )
    except (GradeError, SubmissionsError, ReleaseError, ValueError) as err:
        print(f"cnnkit grade: {err}", file=sys.stderr)
        return 1
    _print_batch(batch)
    return 0


def _print_batch(batch) -> None:
    from autograder.report import summary

    max_score = sum(i.max_points for i in batch.setup.items)
    reused = len(batch.outcomes) - len(batch.graded_now)
    print(summary(batch.outcomes, max_score, standings=batch.standings))
    print(
        f"\ngraded {len(batch.graded_now)} submissions now, reused {reused} unchanged "
        f"(--force regrades them)"
    )
    print(f"grades:     {batch.out / 'grades.csv'}")
    print(f"summary:    {batch.out / 'summary.html'} (the class at a glance, for the staff)")
    feedback = batch.setup.course / "feedback"
    print(
        f"feedback:   {feedback}/<student_id>/{batch.setup.assignment}/ (nbgrader release_feedback)"
    )
    print(f"gradescope: {batch.out / 'gradescope'}/<student_id>/results.json")
    print(f"gradebook:  {batch.setup.course / 'gradebook.db'} (formgrader, nbgrader export)")
    if batch.similar is not None:
        print(f"similarity: {batch.out / 'similarity.html'} ({_pairs_line(batch.similar)})")
    for notice in batch.notices:
        print(notice)


def _pairs_line(pairs) -> str:
    """'2 pairs reported: bob and carol 100% (similar), ...' or 'no pair reported'."""
    if not pairs:
        return "no pair of similar code reported"
    shown = ", ".join(f"{p.a} and {p.b} {p.share:.0%} ({p.flag})" for p in pairs[:3])
    more = f", and {len(pairs) - 3} more" if len(pairs) > 3 else ""
    count = "1 pair" if len(pairs) == 1 else f"{len(pairs)} pairs"
    return f"{count} reported, for the staff only: {shown}{more}"


def similarity_cmd(args: argparse.Namespace) -> int:
    """Compare the code of a class's submissions; write similarity.json and similarity.html."""
    from autograder.collect import SubmissionsError, find_submissions
    from autograder.grade import GradeError, prepare
    from autograder.release import ReleaseError
    from autograder.sandbox import Limits
    from autograder.similarity import compare_batch, write_reports

    course = Path(args.course).resolve()
    out = Path(args.out) if args.out else course / "grades" / args.assignment
    try:
        setup = prepare(args.assignment, course, Limits())
        subs = find_submissions(
            Path(args.submissions), args.assignment, setup.notebooks, out / ".extracted"
        )
        docs, pairs = compare_batch(
            subs, setup.source, setup.released, [Path(a) for a in args.against]
        )
    except (GradeError, SubmissionsError, ReleaseError, ValueError) as err:
        print(f"cnnkit similarity: {err}", file=sys.stderr)
        return 1
    _, page = write_reports(out, args.assignment, docs, pairs)
    students = sum(d.kind == "student" for d in docs.values())
    print(f"{students} submissions compared: {_pairs_line(pairs)}")
    for pair in pairs:
        print(f"  {pair.share:4.0%}  {pair.flag:16s} {pair.a} and {pair.b}")
    print(f"report: {page}")
    return 0


def gradescope_cmd(args: argparse.Namespace) -> int:
    """Write an assignment's Gradescope autograder bundle."""
    from autograder.grade import GradeError
    from autograder.gradescope import BundleError, make_bundle
    from autograder.release import ReleaseError

    try:
        path = make_bundle(
            args.assignment,
            Path(args.course),
            Path(args.out),
            args.visibility,
            args.timeout,
            args.force,
        )
    except (BundleError, GradeError, ReleaseError, ValueError) as err:
        print(f"cnnkit gradescope: {err}", file=sys.stderr)
        return 1
    print(f"{path}: upload it as the autograder of a Gradescope programming assignment")
    print("(Ubuntu 22.04 base image; students submit the notebook itself)")
    return 0


def feedback_cmd(args: argparse.Namespace) -> int:
    """Write the feedback of every graded student again, with the gradebook's marks now."""
    from autograder.grade import GradeError, feedback
    from autograder.release import ReleaseError

    try:
        students, pending = feedback(
            args.assignment, Path(args.course), Path(args.out) if args.out else None
        )
    except (GradeError, ReleaseError, ValueError) as err:
        print(f"cnnkit feedback: {err}", file=sys.stderr)
        return 1
    folder = Path(args.course).resolve() / "feedback"
    print(f"feedback for {len(students)} students in {folder}/<student_id>/{args.assignment}/")
    if pending:
        print(f"note: {pending} written answers are not graded yet (formgrader)")
    print(f"release it with: nbgrader release_feedback {args.assignment}")
    return 0


def export_cmd(args: argparse.Namespace) -> int:
    """Write an assignment's totals for an LMS; report students that could not be matched."""
    from autograder.lms import ExportError, export

    course = Path(args.course).resolve()
    out = Path(args.out) if args.out else course / "grades" / args.assignment / f"{args.format}.csv"
    try:
        done = export(
            course,
            args.assignment,
            args.format,
            out,
            args.roster,
            args.lms_assignment_id,
            args.force,
        )
    except ExportError as err:
        print(f"cnnkit export: {err}", file=sys.stderr)
        return 1
    print(f"{done.rows} students written to {done.path}")
    for problem in done.problems:
        print(f"not matched: {problem}", file=sys.stderr)
    return 1 if done.problems else 0


def validate_cmd(args: argparse.Namespace) -> int:
    """Check a notebook before submitting it; 0 when nothing would be flagged or fail."""
    from autograder.validate import ValidateError, describe, validate

    try:
        found = validate(Path(args.notebook), args.assignment, args.release, args.timeout)
    except ValidateError as err:
        print(f"cnnkit validate: {err}", file=sys.stderr)
        return 2
    print(describe(found))
    return 0 if found.ok else 1


def demo(args: argparse.Namespace) -> int:
    """Release an assignment into a temporary course, make a synthetic class of correct,
    partial, broken and misbehaving submissions, grade it and show the result."""
    import tempfile

    from autograder.grade import grade
    from autograder.outputs import curve_specs
    from autograder.release import release
    from autograder.sandbox import Limits
    from autograder.synthetic import expected, make_class

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cnnkit-demo-"))
    course = root / "course"
    print(f"releasing {args.assignment} into the course {course} ...")
    released = release(args.assignment, course, prove_pair=False)
    subs = make_class(
        course / "source" / args.assignment, released, args.assignment, root / "submissions"
    )
    cls = expected(args.assignment)
    print(f"a synthetic class of {len(cls)} in {subs}: {', '.join(cls)}\n")
    limits = Limits(
        timeout=args.timeout,
        # the class's hanging students each cost a cell limit; a4's training needs its own
        cell_timeout=args.cell_timeout or (None if curve_specs(args.assignment) else 10.0),
        memory_mb=2048,
        case_timeout=args.case_timeout,
    )
    # the class is a catalogue of behaviours made from a few notebooks: its copies are not news
    batch = grade(
        args.assignment,
        subs,
        course,
        workers=args.workers,
        limits=limits,
        progress=not args.quiet,
        similarity=False,
    )
    print(_class_table(batch))
    _print_batch(batch)
    wrong = [
        o.student_id for o in batch.outcomes if (o.status, set(o.flag_names)) != cls[o.student_id]
    ]
    wrong += _similarity_demo(args.assignment, course, root)
    if wrong:
        print(f"\nUNEXPECTED status or flags: {', '.join(wrong)}")
        return 1
    return 0


def _similarity_demo(assignment: str, course: Path, root: Path) -> list[str]:
    """Compare a class of independently written notebooks, a disguised copy of one of them and
    pasted solution cells; print the pairs; the pairs that came out other than expected."""
    from autograder.collect import find_submissions
    from autograder.grade import prepare
    from autograder.sandbox import Limits
    from autograder.similarity import compare_batch, write_reports
    from autograder.synthetic import make_copying_class

    setup = prepare(assignment, course, Limits())
    folder = root / "copying-class"
    wanted = make_copying_class(setup.source, setup.released, assignment, folder)
    if not wanted:
        return []
    subs = find_submissions(folder, assignment, setup.notebooks, root / "copying-extracted")
    docs, pairs = compare_batch(subs, setup.source, setup.released)
    _, page = write_reports(root / "similarity", assignment, docs, pairs)
    print(
        f"\nsimilarity: {len(subs)} students ({', '.join(s.student_id for s in subs)}) "
        f"compared with each other, the kit and the solution:"
    )
    for pair in pairs:
        print(f"  {pair.share:4.0%}  {pair.flag:16s} {pair.a} and {pair.b}")
    print(f"report:     {page}")
    found = {(p.a, p.b): p.flag for p in pairs}
    return [f"{a} and {b}" for (a, b), f in (found.items() ^ wanted.items())]


def _class_table(batch) -> str:
    """One line per student: what they did, score, status, flags."""
    max_score = sum(i.max_points for i in batch.setup.items)
    lines = [f"{'student':20s} {'score':>11s}  {'status':8s} flags"]
    for o in batch.outcomes:
        lines.append(
            f"{o.student_id:20s} {o.score:5g} / {max_score:<3g}  {o.status:8s} "
            f"{';'.join(o.flag_names)}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnkit", description="CNN course kit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="grade a synthetic class in a temporary course")
    p.add_argument("--assignment", default="a1_convolution", help="the assignment to grade")
    p.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: cores)")
    p.add_argument("--timeout", type=float, default=120.0, help="wall seconds per notebook")
    p.add_argument(
        "--cell-timeout",
        type=float,
        help="seconds per cell before it is skipped (default: 10; a4: the assignment's)",
    )
    p.add_argument(
        "--case-timeout", type=float, default=3.0, help="seconds per hidden case of a check"
    )
    p.add_argument("--keep", metavar="DIR", help="build the course here instead of a temp folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=demo)
    p = sub.add_parser("check", help="check every layer on built-in data and time a convolution")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.set_defaults(func=check)
    p = sub.add_parser("zoo", help="per-layer table of a classic architecture")
    p.add_argument("name", nargs="?", help="e.g. lenet5, alexnet, vgg16, resnet50")
    p.add_argument("--expand", action="store_true", help="list the layers inside each block")
    p.set_defaults(func=zoo_table)
    _add_train_parser(sub)
    p = sub.add_parser("release", help="generate student versions of assignments and prove them")
    p.add_argument("assignment", nargs="+", help="assignment names in solutions/, or 'all'")
    p.add_argument(
        "--course",
        help="an nbgrader course folder to release into (default: the kit's assignments/ folder)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a different copy of the source already in the course",
    )
    p.add_argument("--no-proof", action="store_true", help="skip running the two versions")
    p.set_defaults(func=release_cmd)
    _add_grade_parser(sub)
    _add_similarity_parser(sub)
    _add_gradescope_parser(sub)
    p = sub.add_parser(
        "feedback",
        help="write students' feedback again with the graders' marks, for nbgrader release_feedback",
    )
    p.add_argument("assignment", help="e.g. a1_convolution")
    p.add_argument("--course", default=".", help="the nbgrader course folder (default: here)")
    p.add_argument(
        "--out", help="cnnkit grade's output folder (default: <course>/grades/<assignment>)"
    )
    p.set_defaults(func=feedback_cmd)
    p = sub.add_parser("export", help="an assignment's totals for Canvas, Moodle or as CSV")
    p.add_argument("assignment", help="e.g. a1_convolution")
    p.add_argument("--course", default=".", help="the nbgrader course folder (default: here)")
    p.add_argument("--format", choices=["canvas", "moodle", "csv"], default="csv")
    p.add_argument("--roster", help="CSV: student_id and the LMS's name, lms_id, sis_id, ...")
    p.add_argument("--lms-assignment-id", default="", help="Canvas's id of the assignment")
    p.add_argument("--out", help="default: <course>/grades/<assignment>/<format>.csv")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=export_cmd)
    p = sub.add_parser(
        "validate", help="before submitting: what the grader would flag, and which tests fail"
    )
    p.add_argument("notebook", help="your completed notebook, e.g. a1_convolution.ipynb")
    p.add_argument("--assignment", help="default: the notebook's file name")
    p.add_argument("--release", help="the released notebook (default: the kit's)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per cell")
    p.set_defaults(func=validate_cmd)
    return parser


def _add_grade_parser(sub) -> None:
    p = sub.add_parser("grade", help="grade a class's submissions of one assignment")
    p.add_argument("assignment", help="e.g. a1_convolution")
    p.add_argument(
        "submissions", help="<student_id>/<assignment>/<notebook>.ipynb folders, or a zip"
    )
    p.add_argument("--course", default=".", help="the nbgrader course folder (default: here)")
    p.add_argument("--out", help="output folder (default: <course>/grades/<assignment>)")
    p.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: cores)")
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="wall seconds per notebook, every run again after a skipped cell included",
    )
    p.add_argument(
        "--cell-timeout",
        type=float,
        help="seconds a cell may run before it is skipped (default: the assignment's, "
        "60 for a1-a3, 300 for a4)",
    )
    p.add_argument(
        "--case-timeout",
        type=float,
        default=10.0,
        help="seconds one hidden case of the output checks may run before it is stopped",
    )
    p.add_argument(
        "--memory-mb",
        type=int,
        default=2048,
        help="memory of a whole run, all its processes together (a control group), MB",
    )
    p.add_argument(
        "--disk-mb",
        type=int,
        default=512,
        help="what a run can write (its folder, on a tmpfs that counts as memory too), MB",
    )
    p.add_argument(
        "--max-output-mb",
        type=int,
        default=50,
        help="captured output kept per notebook (a tenth per cell; the rest is cut), and the "
        "cap on each file it writes, MB",
    )
    p.add_argument(
        "--max-processes",
        type=int,
        default=256,
        help="processes and threads a run may have at once",
    )
    p.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    p.add_argument(
        "--no-similarity",
        action="store_true",
        help="do not compare the students' code (cnnkit similarity)",
    )
    _add_against(p)
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on this Dask scheduler's workers (e.g. tcp://10.0.0.5:8786) instead of here",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=grade_cmd)


def _add_against(p) -> None:
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="DIR",
        help="also compare with the .py and .ipynb files under DIR (earlier years, known public "
        "solutions); may be given more than once",
    )


def _add_similarity_parser(sub) -> None:
    p = sub.add_parser(
        "similarity",
        help="compare the code of a class's submissions with each other, the kit and the solution",
    )
    p.add_argument("assignment", help="e.g. a1_convolution")
    p.add_argument(
        "submissions", help="<student_id>/<assignment>/<notebook>.ipynb folders, or a zip"
    )
    p.add_argument("--course", default=".", help="the nbgrader course folder (default: here)")
    p.add_argument("--out", help="output folder (default: <course>/grades/<assignment>)")
    _add_against(p)
    p.set_defaults(func=similarity_cmd)


def _add_gradescope_parser(sub) -> None:
    p = sub.add_parser("gradescope", help="make a Gradescope autograder bundle of an assignment")
    p.add_argument("assignment", help="e.g. a1_convolution")
    p.add_argument("--course", default=".", help="the nbgrader course folder (default: here)")
    p.add_argument("--out", default="autograder.zip", help="the zip to write (autograder.zip)")
    p.add_argument(
        "--visibility",
        default="after_published",
        choices=("hidden", "after_due_date", "after_published", "visible"),
        help="when students see each test's points and messages (default: after_published)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="wall seconds per notebook")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(func=gradescope_cmd)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
