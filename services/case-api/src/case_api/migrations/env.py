from aftersales_shared.migrations import run
from case_api import models  # noqa: F401  (registers the tables)
from case_api.config import Settings
from sqlmodel import SQLModel

run(SQLModel.metadata, Settings().sqlalchemy_url)
