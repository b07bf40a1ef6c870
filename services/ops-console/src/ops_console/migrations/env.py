from aftersales_shared.migrations import run
from ops_console import models  # noqa: F401  (registers the tables)
from ops_console.config import Settings
from sqlmodel import SQLModel

run(SQLModel.metadata, Settings().sqlalchemy_url)
