from aftersales_shared.migrations import run
from sqlmodel import SQLModel

from case_api import models  # noqa: F401  (registers the tables)
from case_api.config import Settings

run(SQLModel.metadata, Settings().sqlalchemy_url)
