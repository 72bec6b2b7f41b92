"""The sandbox: one room for everything that isolates a submission's run.

    from autograder.sandbox import Limits, run_notebook
    result = run_notebook(notebook, workdir, Limits(timeout=600), env, hide=[...], uid=200_123)

- `run.py`: the parent side, `run_notebook`: namespaces (pid, mount, net, ipc), the privileges
  dropped, the paths hidden, the limits, the hard kill, and what the run held (`isolation`);
- `child.py`: the runner inside the student's process tree, which executes the notebook with
  nbclient under the resource limits and cuts its output;
- `forkserver.py`: the forking server each grading thread keeps, from which runs start with
  their modules already imported.

Only the names below are the sandbox's interface; the modules' other names are its workings.
"""

from autograder.sandbox.run import (
    GRACE,
    Limits,
    RunResult,
    run_notebook,
    start_server,
)

__all__ = ["GRACE", "Limits", "RunResult", "run_notebook", "start_server"]
