"""troupe.yaml: the settings of a replica and its inventory (pure, apart from reading it).

Precedence, lowest first: built-in defaults < troupe.yaml < flags. (Later issues add
the Slack settings and TROUPE_* environment variables; this module stays the one
place that reads them.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from troupe.inventory import Inventory
from troupe.yamlfile import load_model

DEFAULT_PATH = Path("troupe.yaml")


class Execution(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    forks: Annotated[int, Field(ge=1, le=500)] = 10  # hosts worked on at once, at most
    playbooks_dir: str = "playbooks"


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")  # a misspelt section is an error

    inventory: Inventory = Inventory()
    execution: Execution = Execution()


def load_config(path: str | Path = DEFAULT_PATH) -> Config:
    return load_model(path, Config)
