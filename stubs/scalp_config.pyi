# Types of the package scalp_config (the config/ folder, installed under that name; mypy cannot follow the
# editable install's mapping).
from pathlib import Path

HERE: Path

def default(name: str) -> Path: ...
def packaged(name: str) -> Path: ...
