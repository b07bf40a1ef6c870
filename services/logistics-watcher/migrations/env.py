from aftersales_shared.migrations import run
from sqlmodel import SQLModel

from logistics_watcher import models  # noqa: F401  (registers the tables)
from logistics_watcher.config import Settings

run(SQLModel.metadata, Settings().sqlalchemy_url)
