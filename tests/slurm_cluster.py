"""Drive a real SLURM scheduler from tests.

The project's `.slurm` scripts are only proven by running them under `sbatch`. These helpers
start the one-node cluster of `scripts/slurm/setup_local_slurm.sh` when none answers, submit
scripts, wait for them, and read back what `squeue`/`sacct` recorded, so tests assert on the
scheduler's own records rather than on our guess of them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import pytest

import babykd

SETUP_SCRIPT = babykd.REPO_ROOT / "scripts" / "slurm" / "setup_local_slurm.sh"
# First-time setup installs packages, which can be slow on a cold mirror.
SETUP_TIMEOUT_S = 900
# States after which a job never runs again: waiting stops when every job reaches one.
TERMINAL_STATES = frozenset(
    {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
     "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT"}
)
USABLE_NODE_STATES = frozenset({"idle", "mix", "alloc"})
SACCT_FIELDS = ("JobID", "JobName", "Partition", "State", "ExitCode", "Elapsed", "Start", "End")


class SlurmError(RuntimeError):
    """A SLURM command failed; the message carries the command line and its stderr."""


class SacctRow(NamedTuple):
    """One `sacct -X` line; array tasks have job_id like ``"12_0"``."""

    job_id: str
    name: str
    partition: str
    state: str  # e.g. "COMPLETED", "CANCELLED by 0"
    exit_code: str  # "code:signal", e.g. "0:0"
    elapsed: str
    start: str  # ISO time, "Unknown"/"None" before the job starts
    end: str

    @property
    def final(self) -> bool:
        """Finished, and the record is whole.

        slurmdbd may first record a short job from its completion message alone (name
        "allocation", no partition) and fill in the rest only when slurmctld's periodic
        job-start sync (every few seconds) arrives, so a finished state is not enough.
        """
        return bool(self.partition) and self.state.split(" ")[0] in TERMINAL_STATES


def _run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def _checked(cmd: Sequence[str], *, env: Mapping[str, str] | None = None) -> str:
    proc = _run(cmd, env=env)
    if proc.returncode != 0:
        raise SlurmError(f"`{shlex.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def cluster_answers() -> bool:
    """True when a node is usable and `sacct` answers (tests read finished jobs from it)."""
    if shutil.which("sinfo") is None or shutil.which("sacct") is None:
        return False
    try:
        nodes = _run(["sinfo", "-h", "-o", "%t"], timeout=15)
        accounting = _run(["sacct", "-n", "-X", "-S", "now"], timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return (nodes.returncode == 0 and accounting.returncode == 0
            and bool(USABLE_NODE_STATES & set(nodes.stdout.split())))


def ensure_local_slurm() -> None:
    """Make sure a SLURM cluster answers, starting the local one if needed.

    Skips (not fails) where the cluster cannot be made here: not root, or SLURM missing and
    no apt-get. Fails when the setup script itself fails, since that is a real breakage.
    """
    if cluster_answers():
        return
    if os.geteuid() != 0:
        pytest.skip(f"no SLURM cluster answers and not root: start one with `sudo bash {SETUP_SCRIPT}`")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and apt-get is unavailable to install it "
                    f"(see {SETUP_SCRIPT.parent / 'README.md'})")
    proc = _run(["bash", str(SETUP_SCRIPT)], timeout=SETUP_TIMEOUT_S)
    if proc.returncode != 0 or not cluster_answers():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"{SETUP_SCRIPT} exited {proc.returncode} and no cluster answers:\n{tail}")
    print(proc.stderr)  # its timings, shown with `pytest -s`


def submit(script: str | os.PathLike[str], *args: object, env: Mapping[str, str] | None = None,
           dependency: str | None = None, array: str | None = None,
           chdir: str | os.PathLike[str] | None = None, output: str | os.PathLike[str] | None = None,
           job_name: str | None = None, extra_sbatch_args: Sequence[str] = ()) -> str:
    """Submit `script args...` with `sbatch --parsable` and return the job id.

    env: extra variables for the job. They go through sbatch's own environment with
      `--export=ALL` rather than `--export=ALL,K=V`, so values may hold commas or spaces.
    dependency: passed as `--dependency=` (e.g. ``"afterok:12"``).
    array: passed as `--array=` (e.g. ``"0-2"``).
    chdir/output: `--chdir=` (job working directory) and `--output=` (``%j``, ``%A_%a`` allowed).
    extra_sbatch_args: anything else; command-line options override the script's #SBATCH lines.
    """
    cmd = ["sbatch", "--parsable", "--export=ALL"]
    for option, value in (("--dependency", dependency), ("--array", array), ("--chdir", chdir),
                          ("--output", output), ("--job-name", job_name)):
        if value is not None:
            cmd.append(f"{option}={value}")
    cmd += [*extra_sbatch_args, os.fspath(script), *map(str, args)]
    job_env = {**os.environ, **env} if env else None
    # --parsable prints "jobid" or "jobid;cluster".
    job_id = _checked(cmd, env=job_env).strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"`{shlex.join(cmd)}` printed {job_id!r}, not a job id")
    return job_id


def _ids(job_ids: Iterable[str]) -> str:
    ids = ",".join(str(j) for j in job_ids)
    if not ids:
        raise ValueError("no job ids given")
    return ids


def job_states(job_ids: Iterable[str]) -> dict[str, SacctRow]:
    """`sacct -X` rows for these jobs, keyed by JobID (an array job yields one row per task)."""
    cmd = ["sacct", "-X", "-n", "-P", "-j", _ids(job_ids), f"--format={','.join(SACCT_FIELDS)}"]
    rows = {}
    for line in _checked(cmd).splitlines():
        fields = line.split("|")
        if len(fields) != len(SACCT_FIELDS):
            raise SlurmError(f"`{shlex.join(cmd)}` printed {line!r}: expected {len(SACCT_FIELDS)} fields")
        row = SacctRow(*fields)
        rows[row.job_id] = row
    return rows


def _active(job_ids: Iterable[str]) -> bool:
    """Whether squeue still lists any of the jobs as pending/running/completing."""
    cmd = ["squeue", "-h", "-j", _ids(job_ids), "-o", "%i"]
    proc = _run(cmd)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # already purged from slurmctld's memory
            return False
        raise SlurmError(f"`{shlex.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return bool(proc.stdout.strip())


def _known_to_controller(job_ids: Iterable[str]) -> set[str]:
    """Every job and array task slurmctld still remembers, finished ones included (empty once purged)."""
    proc = _run(["squeue", "--states=all", "-h", "-j", _ids(job_ids), "-o", "%i"])
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def _all_recorded(job_ids: Sequence[str], rows: Mapping[str, SacctRow]) -> bool:
    """Every job (every task of an array) has a final sacct row; slurmdbd lags squeue.

    slurmdbd records array tasks one by one, so a task the controller knows must
    have its own row too: seeing some of an array's tasks in sacct is not enough.
    """
    if not _known_to_controller(job_ids) <= set(rows):
        return False
    for job_id in job_ids:
        own = [r for r in rows.values() if r.job_id == job_id or r.job_id.startswith(f"{job_id}_")]
        if not own or not all(r.final for r in own):
            return False
    return True


def wait_for_jobs(job_ids: Iterable[str], timeout: float = 120.0,
                  poll_s: float = 0.5) -> dict[str, SacctRow]:
    """Wait until all jobs are finished in both squeue and sacct; return their sacct rows.

    Raises TimeoutError (with the squeue/sacct trail) if they are not done in `timeout` s.
    Failed jobs count as finished: callers assert on the returned states.
    """
    ids = [str(j) for j in job_ids]
    deadline = time.monotonic() + timeout
    while True:
        if not _active(ids):
            rows = job_states(ids)
            if _all_recorded(ids, rows):
                return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs {ids} not finished after {timeout:.0f} s\n{slurm_trail(ids)}")
        time.sleep(poll_s)


def slurm_trail(job_ids: Iterable[str]) -> str:
    """What `squeue` and `sacct` say about the jobs now, as shell transcript text (for logs/reports)."""
    ids = _ids(job_ids)
    commands = (
        ["squeue", "--states=all", "-j", ids, "-o", "%.10i %.12j %.10T %.18r %.22E %.8M %R"],
        ["sacct", "-X", "-j", ids,
         "--format=JobID%12,JobName%12,State%12,ExitCode,Submit,Start,End,Elapsed"],
    )
    parts = []
    for cmd in commands:
        proc = _run(cmd)
        parts.append(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}".rstrip())
    return "\n".join(parts) + "\n"

