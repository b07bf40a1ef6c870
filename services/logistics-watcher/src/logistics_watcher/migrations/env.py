from aftersales_shared.migrations import run
from logistics_watcher import models  # noqa: F401  (registers the tables)
from logistics_watcher.config import Settings
from sqlmodel import SQLModel

run(SQLModel.metadata, Settings().sqlalchemy_url)
