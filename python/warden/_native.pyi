"""Type stubs of the native module (crates/python, warden-python). Use :mod:`warden` instead."""

from os import PathLike
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

ERROR_CLASSES: List[str]
SIGNAL_CHECK_SECS: float

_Path = Union[str, PathLike[str]]

def safe_text(text: str) -> str: ...

class Native:
    @staticmethod
    def from_profile(path: _Path, password: Optional[str] = None,
                     records_dir: Optional[_Path] = None) -> "Native": ...
    @staticmethod
    def profile_path(name: str) -> str: ...
    @staticmethod
    def login(url: str, username: str, password: Optional[str], key: _Path, certificate: _Path,
              collaboration: Union[str, int], pins: Dict[str, str],
              insecure: Sequence[str] = ..., docker_config: Optional[_Path] = None,
              records_dir: Optional[_Path] = None) -> "Native": ...
    @property
    def url(self) -> str: ...
    @property
    def username(self) -> str: ...
    def create(self, image: str, organizations: List[str], input: bytes,
               name: str = "") -> Tuple[str, List[str]]: ...
    def task(self, task_id: int) -> str: ...
    def tasks(self, all_collaborations: bool = False, mine: bool = False) -> str: ...
    def wait(self, task_id: int, timeout: float = 600.0,
             progress: Optional[Callable[[str], None]] = None
             ) -> Tuple[str, List[Tuple[str, str, Optional[bytes]]], List[str]]: ...
