"""Atomic output: every file and directory appears whole or not at all."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import SafetuneError

WRITTEN_BY = "safetune"  # in every output's metadata: what the tool wrote, it may later replace
MANIFEST = ".safetune-manifest.json"  # in every output directory: the files the tool wrote there


def ensure_parent(path: str | os.PathLike) -> Path:
    """Check that the directory that will hold `path` exists (we never invent deep trees)."""
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise SafetuneError(f"{path}: parent directory {parent} does not exist; create it first")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it is renamed onto `path`."""
    path = ensure_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SafetuneError(f"{path}: could not be written ({exc.strerror or exc}); nothing was changed there. "
                            "Free space or fix permissions and run again") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` whole."""
    path = ensure_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SafetuneError(f"{path}: could not be written ({exc.strerror or exc}); nothing was changed there. "
                            "Free space or fix permissions and run again") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _probe_writable(directory: Path, what: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".safetune-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SafetuneError(f"{what}: cannot write in {directory} ({exc.strerror or exc}); fix its permissions or "
                            "choose another --out") from None


def written_by_safetune(path: Path) -> bool:
    """Did this tool write the file? (its JSON or safetensors metadata says so)"""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return (f.metadata() or {}).get("written_by", "").startswith(WRITTEN_BY)
        if path.suffix == ".json":
            return str(json.loads(path.read_text()).get("written_by", "")).startswith(WRITTEN_BY)
    except Exception:  # unreadable: not provably ours
        return False
    return False


def _manifest(directory: Path) -> list[str]:
    try:
        return list(json.loads((directory / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


_CLAIMS: set[Path] = set()


def claim(path: Path, given: str | os.PathLike) -> None:
    """Claim an output path for this process, before any work: a lock file beside it, created
    exclusively. A second run on the same --out is refused while the first lives (it would otherwise
    find its own files as "stale" and delete another run's output); a dead run's lock is taken over.
    Released when the command ends (release_claims) or the process exits."""
    lock = path.parent / f".{path.name}.safetune-lock"
    if lock in _CLAIMS or os.environ.get("RANK", "0") != "0":  # in a multi-process launch rank 0 holds it
        return
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and _alive(owner):
                raise SafetuneError(f"{given}: another safetune run (pid {owner}) is writing there; wait for it to "
                                    "finish or choose another --out") from None
            lock.unlink(missing_ok=True)  # a finished or killed run's lock
            continue
        except OSError:
            return  # a read-only parent is refused by the writability check with its own message
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        if not _CLAIMS:
            import atexit

            atexit.register(release_claims)
        _CLAIMS.add(lock)
        return


def release_claims() -> None:
    """Remove this process's output locks (the command is over)."""
    while _CLAIMS:
        lock = _CLAIMS.pop()
        try:
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output(path: str | os.PathLike, kind: str = "dir", overwrite: bool = False) -> Path:
    """Before any work: `path` (a directory or a file) can be written, writing it destroys nothing
    this tool did not write, and no other live run is writing it (claim). Returns the path, resolved."""
    given = Path(path)
    resolved = ensure_parent(given.resolve())
    claim(resolved, given)
    where = str(given)
    if kind == "dir":
        if resolved.exists() and not resolved.is_dir():
            raise SafetuneError(f"{where}: exists and is not a directory; choose another --out")
        if resolved.is_dir():
            _probe_writable(resolved, given)
            present = sorted(p.name for p in resolved.iterdir())
            if present and not overwrite:
                shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
                raise SafetuneError(f"{where}: exists and is not empty ({shown}); choose a new --out, or pass "
                                    "--overwrite to replace the files safetune wrote there (others are kept)")
        else:
            _probe_writable(resolved.parent, given)
        return resolved
    if resolved.is_dir():
        raise SafetuneError(f"{where}: is a directory; --out names a file here")
    if resolved.exists():
        if not overwrite:
            raise SafetuneError(f"{where}: exists; choose another --out, or pass --overwrite to replace it")
        if not written_by_safetune(resolved):
            raise SafetuneError(f"{where}: exists and was not written by safetune, so it is never replaced; "
                                "choose another --out")
    _probe_writable(resolved.parent, given)
    return resolved


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success its files land in `path` with a manifest of them.
    A new `path` appears whole (one rename). Into an existing one (after check_output(...,
    overwrite=True)) the files move one by one: files of an earlier manifest are replaced or removed,
    every other file is left as it was, and a file of the same name that safetune did not write
    stops the move before anything is changed."""
    path = Path(path).resolve()
    with atomic_dir(path.with_name(f".{path.name}.new")) as tmp:
        yield tmp
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        (tmp / MANIFEST).write_text(json.dumps({"written_by": WRITTEN_BY, "files": files}, indent=1))
    staged = path.with_name(f".{path.name}.new")
    try:
        if not path.exists():
            os.replace(staged, path)
            return
        ours = set(_manifest(path))
        clashes = [f for f in files if (path / f).exists() and f not in ours]
        if clashes:
            raise SafetuneError(f"{path}: holds {clashes[0]}, which safetune did not write and would have to replace; "
                                "move it away or choose another --out")
        for f in files:
            (path / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / f, path / f)
        for stale in ours - set(files):
            (path / stale).unlink(missing_ok=True)
        os.replace(staged / MANIFEST, path / MANIFEST)
    except OSError as exc:
        raise SafetuneError(f"{path}: could not be written ({exc.strerror or exc}); free space or fix permissions "
                            "and run again") from exc
    finally:
        shutil.rmtree(staged, ignore_errors=True)


STUDY_MARKER = ".safetune-study.json"


def claim_study_dir(path: str | os.PathLike, study: str) -> Path:
    """A study's (or the demo's) output directory: new, empty, or one this study wrote before (an
    interrupted run resumes there). A directory holding anything else is refused: a study writes
    many files as it goes and would mix with, or replace, someone else's."""
    given = Path(path)
    resolved = ensure_parent(given.resolve())
    claim(resolved, given)
    if resolved.exists() and not resolved.is_dir():
        raise SafetuneError(f"{given}: exists and is not a directory; choose another --out")
    marker = resolved / STUDY_MARKER
    if resolved.is_dir() and any(resolved.iterdir()):
        try:
            owner = json.loads(marker.read_text()).get("study")
        except (OSError, ValueError, AttributeError):
            raise SafetuneError(f"{given}: exists, is not empty and was not written by a safetune study; choose a new "
                                "or empty --out") from None
        if owner != study:
            raise SafetuneError(f"{given}: holds a `{owner}` study, not `{study}`; choose another --out")
        _probe_writable(resolved, given)
        return resolved
    _probe_writable(resolved.parent if not resolved.exists() else resolved, given)
    resolved.mkdir(exist_ok=True)
    write_text(marker, json.dumps({"written_by": WRITTEN_BY, "study": study}) + "\n")
    return resolved


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Text written atomically (a temporary sibling renamed onto the path)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, mark: bool = False, compact: bool = False) -> Path:
    """JSON written atomically; `mark` adds "written_by" (an output a later --overwrite may replace);
    `compact` drops the indentation (stored results in the repository: half the bytes)."""
    if mark:
        obj = {"written_by": WRITTEN_BY, **obj}
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=2, sort_keys=False)
    return write_text(path, text + "\n")


def save_image(path: str | os.PathLike, image) -> Path:
    """A PNG written atomically."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def read_safetensors(path: str | os.PathLike, what: str, fix: str) -> dict:
    """A safetensors file's tensors; a missing, truncated or foreign file is one clear line naming
    `what` it should have been and the `fix`, never a traceback."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SafetuneError(f"{path}: {what} ({exc}); {fix}") from exc
