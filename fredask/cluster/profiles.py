"""Named cluster profiles: a LocalCluster, a SLURM or PBS job queue, a local GPU node.

A profile is one section of a Dask config file under ``jobqueue:``, spelled the
way dask-jobqueue's ``jobqueue.yaml`` spells its own sections, plus three keys of
fredask's::

    jobqueue:
      slurm-cpu:
        kind: slurm              # local | slurm | pbs | local-cuda
        adapt: {minimum-jobs: 0, maximum-jobs: 8}   # or scale: {jobs: 2}
        cores: 32                # the rest: the cluster class's own keywords
        memory: 120GiB
        walltime: "02:00:00"

Every other key is a keyword of the cluster class (``SLURMCluster``,
``PBSCluster``, ``LocalCluster``, ``LocalCUDACluster``), with ``-`` for ``_``;
keys left out fall back to dask-jobqueue's config for the kind
(``jobqueue.slurm`` / ``jobqueue.pbs``, i.e. the user's own ``jobqueue.yaml``).

A bare profile name is looked up in this order: the built-in ``local`` and
``local-cuda``; the user's Dask config (``~/.config/dask/*.yaml``,
``$DASK_CONFIG``), whose ``jobqueue.<name>`` sections with a ``kind`` are
profiles, as are dask-jobqueue's own ``jobqueue.slurm`` and ``jobqueue.pbs``;
the files shipped with the package (``fredask/cluster/shipped_profiles/``).
A profile can also be named by the path of a YAML file (``path.yaml`` with one
profile, ``path.yaml:name``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dask
import yaml

from fredask.errors import FredaskError

KINDS = ("local", "slurm", "pbs", "local-cuda")
JOBQUEUE_KINDS = ("slurm", "pbs")
#: fredask's own keys in a profile; the others are cluster keywords.
PROFILE_KEYS = ("kind", "scale", "adapt")
#: Cluster-level keywords of dask-jobqueue (not passed to a job when rendering its script).
CLUSTER_ONLY = ("scheduler_options", "shared_temp_directory", "n_workers", "silence_logs")
#: Where the ready-to-edit profiles of the repository live.
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped_profiles"
#: The placeholder dask-jobqueue itself writes for a scheduler not started yet.
PLACEHOLDER_SCHEDULER = "tcp://<insert-scheduler-address-here>:8786"


class ProfileError(FredaskError, ValueError):
    """A profile that does not exist, is malformed, or needs a missing package or GPU."""


@dataclass(frozen=True)
class ClusterProfile:
    """How to start one kind of Dask cluster.

    Parameters
    ----------
    name : str
        The profile's name.
    kind : {"local", "slurm", "pbs", "local-cuda"}
        ``LocalCluster``, dask-jobqueue's ``SLURMCluster`` / ``PBSCluster``, or
        dask-cuda's ``LocalCUDACluster``.
    options : mapping
        Keywords of the cluster class (``-`` or ``_`` spelling).
    scale, adapt : mapping, optional
        Arguments of ``cluster.scale`` (e.g. ``{"jobs": 2}``) or
        ``cluster.adapt`` (e.g. ``{"minimum_jobs": 0, "maximum_jobs": 8}``);
        a job-queue profile with neither asks for one job.
    source : str
        Where the profile was read from.
    """

    name: str
    kind: str
    options: Mapping = field(default_factory=dict)
    scale: Mapping | None = None
    adapt: Mapping | None = None
    source: str = "built-in"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ProfileError(
                f"profile {self.name!r} ({self.source}): kind {self.kind!r} is not one of {KINDS}"
            )
        if self.scale is not None and self.adapt is not None:
            raise ProfileError(f"profile {self.name!r} ({self.source}): give scale or adapt")

    @classmethod
    def from_mapping(cls, name: str, section: Mapping, source: str) -> ClusterProfile:
        """A profile from one ``jobqueue.<name>`` section."""
        if not isinstance(section, Mapping):
            raise ProfileError(f"profile {name!r} ({source}): expected a mapping of options")
        kind = section.get("kind", name if name in KINDS else None)
        if kind is None:
            raise ProfileError(f"profile {name!r} ({source}): no 'kind' (one of {KINDS})")
        options = {_keyword(k): v for k, v in section.items() if k not in PROFILE_KEYS}
        # None in a jobqueue.yaml section means "dask-jobqueue's default": leave it out
        options = {k: v for k, v in options.items() if v is not None}
        if kind in JOBQUEUE_KINDS and "name" in options:
            options["job_name"] = options.pop("name")  # jobqueue.yaml's name is the job's
        scaling = {}
        for key in ("scale", "adapt"):
            value = section.get(key)
            if value is not None and not isinstance(value, Mapping):
                raise ProfileError(
                    f"profile {name!r} ({source}): {key} takes a mapping, e.g. "
                    + ("{jobs: 2}" if key == "scale" else "{minimum-jobs: 0, maximum-jobs: 8}")
                )
            scaling[key] = None if value is None else {_keyword(k): v for k, v in value.items()}
        return cls(name, kind, options, scaling["scale"], scaling["adapt"], source)

    def job_script(self, scheduler: str = PLACEHOLDER_SCHEDULER) -> str:
        """The batch script one job of this profile would run, as dask-jobqueue writes it.

        Nothing is started or submitted; ``scheduler`` is the address written
        into the worker command (dask-jobqueue's placeholder by default).
        """
        if self.kind not in JOBQUEUE_KINDS:
            raise ProfileError(f"profile {self.name!r} is a {self.kind} cluster: no job script")
        job_cls = _jobqueue_class(self)[1]
        options = {k: v for k, v in self.options.items() if k not in CLUSTER_ONLY}
        try:
            job = job_cls(scheduler, name="dummy-name", config_name=self.kind, **options)
        except (TypeError, ValueError) as error:
            raise self._invalid(error) from None
        return job.job_script()

    def _invalid(self, error: Exception) -> ProfileError:
        hint = ""
        if self.kind in JOBQUEUE_KINDS:
            hint = (
                f" (set it in the profile, or for all {self.kind} profiles in your Dask "
                f"config's jobqueue.{self.kind} section, e.g. ~/.config/dask/jobqueue.yaml)"
            )
        return ProfileError(f"profile {self.name!r} ({self.source}): {error}{hint}")

    def start(self):
        """Start the cluster (submitting jobs for a job queue) and scale or adapt it.

        Returns
        -------
        distributed.deploy.Cluster
        """
        options = dict(self.options)
        if self.kind in ("local", "local-cuda") and "local_directory" in options:
            options["local_directory"] = os.path.expandvars(
                os.path.expanduser(str(options["local_directory"]))
            )
        if self.kind in ("local", "local-cuda"):
            from fredask.cluster.local import local_cluster

            cuda = _cuda_cluster_class(self) if self.kind == "local-cuda" else None
            start = functools.partial(local_cluster, cluster_class=cuda)
        else:
            start = _jobqueue_class(self)[0]
            options.setdefault("config_name", self.kind)
        try:
            cluster = start(**options)
        except (TypeError, ValueError) as error:
            raise self._invalid(error) from None
        if self.adapt is not None:
            cluster.adapt(**self.adapt)
        elif self.scale is not None:
            cluster.scale(**self.scale)
        elif self.kind in JOBQUEUE_KINDS:
            cluster.scale(jobs=1)
        return cluster


def _keyword(key: str) -> str:
    return str(key).replace("-", "_")


def _jobqueue_class(profile: ClusterProfile):
    """(cluster class, job class) of a job-queue profile."""
    try:
        if profile.kind == "slurm":
            from dask_jobqueue.slurm import SLURMCluster, SLURMJob

            return SLURMCluster, SLURMJob
        from dask_jobqueue.pbs import PBSCluster, PBSJob

        return PBSCluster, PBSJob
    except ImportError:
        raise ProfileError(
            f"profile {profile.name!r} is a {profile.kind} cluster, which needs dask-jobqueue: "
            "pip install 'dask-jobqueue>=0.8.1'"
        ) from None


def gpu_count() -> int:
    """How many NVIDIA GPUs this process sees (0 without dask-cuda, NVML or a GPU)."""
    try:
        from dask_cuda.utils import get_n_gpus

        return int(get_n_gpus())
    except Exception:  # no dask-cuda, no driver, no device: all mean "no GPU"
        return 0


def _cuda_cluster_class(profile: ClusterProfile):
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        raise ProfileError(
            f"profile {profile.name!r} is a local-cuda cluster, which needs dask-cuda: "
            "pip install 'fredask[gpu]'"
        ) from None
    if gpu_count() == 0:
        raise ProfileError(
            f"profile {profile.name!r} is a local-cuda cluster, but no GPU is visible "
            "(NVML finds none; check CUDA_VISIBLE_DEVICES and the driver)"
        )
    return LocalCUDACluster


def profile_files(directory: Path = SHIPPED_DIR) -> list[Path]:
    """The profile files of a directory (``*.yaml``, ``*.yml``), sorted."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))


def read_profiles(path: str | Path) -> dict[str, ClusterProfile]:
    """The profiles of one YAML file (its ``jobqueue:`` sections)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ProfileError(f"{path}: cannot read a profile: {error}") from None
    sections = data.get("jobqueue") if isinstance(data, Mapping) else None
    if not isinstance(sections, Mapping) or not sections:
        raise ProfileError(f"{path}: no profile; expected 'jobqueue: {{NAME: {{kind: ...}}}}'")
    return {
        str(name): ClusterProfile.from_mapping(str(name), section, str(path))
        for name, section in sections.items()
    }


def _config_profiles() -> dict[str, ClusterProfile | ProfileError]:
    """Profiles in the user's Dask config (jobqueue sections with a kind, slurm, pbs).

    A malformed section is kept as its error, raised only when asked for by name.
    """
    try:
        import dask_jobqueue  # noqa: F401  (registers jobqueue.slurm / jobqueue.pbs defaults)
    except ImportError:
        pass
    sections = dask.config.get("jobqueue", default={}) or {}
    out: dict[str, ClusterProfile | ProfileError] = {}
    for name, section in sections.items():
        if isinstance(section, Mapping) and ("kind" in section or name in JOBQUEUE_KINDS):
            try:
                out[name] = ClusterProfile.from_mapping(
                    name, section, f"Dask config jobqueue.{name}"
                )
            except ProfileError as error:
                out[name] = error
    return out


def _shipped_profiles() -> dict[str, ClusterProfile]:
    out: dict[str, ClusterProfile] = {}
    for path in profile_files():
        for name, profile in read_profiles(path).items():
            out.setdefault(name, profile)
    return out


def _known() -> dict[str, ClusterProfile | ProfileError]:
    out: dict[str, ClusterProfile | ProfileError] = {
        kind: ClusterProfile(kind, kind) for kind in ("local", "local-cuda")
    }
    for found in (_config_profiles(), _shipped_profiles()):
        for name, profile in found.items():
            out.setdefault(name, profile)
    return out


def available_profiles() -> dict[str, ClusterProfile]:
    """Every profile a bare name can refer to, by name (first match wins)."""
    return {name: p for name, p in _known().items() if isinstance(p, ClusterProfile)}


_FILE = re.compile(r"^(?P<path>.+\.ya?ml)(?::(?P<name>[\w.-]+))?$")


def load_profile(spec: str | Path | ClusterProfile) -> ClusterProfile:
    """The profile a name, ``path.yaml`` or ``path.yaml:name`` refers to.

    Parameters
    ----------
    spec : str, path or ClusterProfile
        A bare profile name (see the module's lookup order) or a YAML file.

    Returns
    -------
    ClusterProfile
    """
    if isinstance(spec, ClusterProfile):
        return spec
    text = str(spec)
    match = _FILE.match(text)
    if match:
        profiles = read_profiles(match["path"])
        name = match["name"]
        if name is None:
            if len(profiles) > 1:
                raise ProfileError(
                    f"{text} holds several profiles {sorted(profiles)}; name one as {text}:NAME"
                )
            return next(iter(profiles.values()))
        if name not in profiles:
            raise ProfileError(f"{match['path']} has no profile {name!r}: {sorted(profiles)}")
        return profiles[name]
    known = _known()
    if text not in known:
        raise ProfileError(
            f"unknown cluster profile {text!r}; known profiles: {', '.join(sorted(known))} "
            "(or give a profile .yaml file, a scheduler address tcp://HOST:PORT, or a "
            "scheduler file .json)"
        )
    if isinstance(known[text], ProfileError):
        raise known[text]
    return known[text]
