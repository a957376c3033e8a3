"""The common base of the extractors of user-passed model files (MACE, metatomic, UMA)."""

from __future__ import annotations

from pathlib import Path

from fredask.extract.base import Extractor
from fredask.extract.presets._common import _package_version
from fredask.store.structures import file_hash


class _FileExtractor(Extractor):
    """Common parts of the extractors of user-passed model files."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._hash: str | None = None
        self._model_dtype: str | None = None

    def _check_file(self) -> Path:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}: model file {self.path} does not exist")
        return path

    def metadata(self) -> dict[str, object]:
        """Model, package, version, checkpoint hash and dtype."""
        path = self._check_file()
        if self._hash is None:
            self._hash = file_hash(path)
        return {
            "model": self.name,
            "package": self.package,
            "package_version": _package_version(self.package),
            "checkpoint": str(path),
            "checkpoint_file": path.name,
            "checkpoint_hash": self._hash,
            "dtype": "float32",
            "model_dtype": self._model_dtype,
        }
